"""The automatic raters behave like the objectives they stand for, deterministically."""

import math

import pytest

import lwdpo_edge  # noqa: F401  (offline environment before sentence-transformers loads)
from lwdpo_edge import DEFAULT_OBJECTIVES
from lwdpo_edge.raters import (
    ConcisenessRater,
    HelpfulnessRater,
    Rater,
    ReadabilityRater,
    count_sentences,
    count_syllables,
    default_raters,
    flesch_reading_ease,
    score_answers,
)

pytest.importorskip("sentence_transformers")

RELEVANCE_PAIRS = [
    # (prompt, relevant answer, irrelevant answer)
    ("How do I boil an egg?", "Put the egg in boiling water for about nine minutes, then cool it in cold water.",
     "The stock market closed higher today after strong earnings reports."),
    ("Why is the sky blue?", "Air molecules scatter blue sunlight more than red light, so the sky looks blue.",
     "My favourite football team won the match on Saturday."),
    ("What is recursion in programming?", "Recursion is when a function calls itself on a smaller version of the problem until it reaches a base case.",
     "Tomatoes grow best in warm, sunny places with regular watering."),
    ("How can I save money on groceries?", "Plan your meals, make a shopping list, buy store brands and avoid shopping when hungry.",
     "The Moon is about 384,000 kilometres away from the Earth."),
    ("What should I pack for a weekend trip?", "Pack two changes of clothes, a toothbrush, a phone charger and any medicine you need.",
     "Photosynthesis turns light, water and carbon dioxide into sugar."),
]

SIMPLE_VS_JARGON = [
    ("The sun is hot. It gives us light. Plants need it to grow.",
     "Photosynthetic organisms utilize electromagnetic radiation to synthesize carbohydrates via chlorophyll-mediated biochemical pathways."),
    ("Wash your hands with soap. Rub them well. Then rinse.",
     "Comprehensive antimicrobial hygiene necessitates systematic application of surfactant formulations."),
    ("A loop runs the same code again and again.",
     "Iterative constructs facilitate repeated execution of encapsulated instructional sequences contingent upon conditional evaluation."),
]


@pytest.fixture(scope="module")
def helpfulness():
    return HelpfulnessRater()


def test_default_raters_follow_the_objective_order():
    raters = default_raters()
    assert tuple(raters) == DEFAULT_OBJECTIVES
    for name, rater in raters.items():
        assert isinstance(rater, Rater) and rater.name == name


@pytest.mark.parametrize("prompt,relevant,irrelevant", RELEVANCE_PAIRS)
def test_helpfulness_prefers_the_relevant_answer(helpfulness, prompt, relevant, irrelevant):
    on_topic, off_topic = helpfulness.score([prompt, prompt], [relevant, irrelevant])
    assert on_topic > off_topic + 0.2


def test_helpfulness_of_an_empty_answer_is_the_lowest(helpfulness):
    prompt = "How do I boil an egg?"
    scores = helpfulness.score([prompt] * 3, ["", "   ", "The weather is nice."])
    assert scores[0] == scores[1] == -1.0
    assert scores[2] > -1.0


def test_restating_the_question_is_not_an_answer(helpfulness):
    prompt = "Why do some animals hibernate?"
    echo, echo_plus_junk, answer = helpfulness.score([prompt] * 3, [
        "Why do some animals hibernate?",
        "why do some  animals hibernate? I like trains.",
        "Animals hibernate to save energy when food is scarce in winter.",
    ])
    assert echo == -1.0
    assert echo_plus_junk < answer - 0.3


def test_helpfulness_is_deterministic_whatever_the_batch(helpfulness):
    prompts = [p for p, _, _ in RELEVANCE_PAIRS]
    answers = [a for _, a, _ in RELEVANCE_PAIRS]
    together = helpfulness.score(prompts, answers)
    alone = [helpfulness.score([p], [a])[0] for p, a in zip(prompts, answers)]
    assert together == helpfulness.score(prompts, answers)
    assert together == pytest.approx(alone, abs=2e-4)  # 4-decimal rounding absorbs padding noise


def test_conciseness_is_monotone_decreasing_in_length():
    rater = ConcisenessRater()
    answers = [" ".join(["word"] * n) for n in (0, 1, 2, 5, 10, 50, 200)]
    scores = rater.score(["q"] * len(answers), answers)
    assert scores[0] == 0.0  # -log(1 + 0)
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert scores[3] == pytest.approx(-math.log(6), abs=1e-4)


def test_readability_ranks_simple_text_above_jargon():
    rater = ReadabilityRater()
    for simple, jargon in SIMPLE_VS_JARGON:
        easy, hard = rater.score(["q", "q"], [simple, jargon])
        assert easy > hard + 30


def test_readability_is_clipped_and_empty_is_lowest():
    rater = ReadabilityRater(low=-50, high=120)
    scores = rater.score(["q"] * 3, ["", "Go.", "Incomprehensibility internationalization electroencephalography."])
    assert scores[0] == -50.0
    assert scores[1] <= 120.0
    assert scores[2] == -50.0  # far below -50 before clipping


def test_flesch_matches_the_formula_on_a_hand_counted_sentence():
    # 6 words, 1 sentence, 6 syllables: 206.835 - 1.015 * 6 - 84.6 * 1
    assert flesch_reading_ease("The cat sat on the mat.") == pytest.approx(206.835 - 1.015 * 6 - 84.6)
    assert math.isnan(flesch_reading_ease("..."))


@pytest.mark.parametrize("word,syllables", [
    ("cat", 1), ("make", 1), ("liked", 1), ("water", 2), ("simple", 2), ("table", 2), ("wanted", 2),
    ("area", 2), ("beautiful", 3), ("photosynthesis", 5),
])
def test_syllable_counts(word, syllables):
    assert count_syllables(word) == syllables


def test_line_breaks_end_sentences():
    # List items read as separate sentences even without full stops.
    assert count_sentences("Tips:\n- drink water\n- sleep well\n- walk daily") == 4
    assert count_sentences("One. Two! Three?") == 3


def test_score_answers_pairs_every_answer_with_every_objective(helpfulness):
    raters = {"helpfulness": helpfulness, "conciseness": ConcisenessRater(), "readability": ReadabilityRater()}
    prompt, relevant, irrelevant = RELEVANCE_PAIRS[0]
    rows = score_answers([prompt, prompt], [relevant, irrelevant], raters)
    assert [list(r) for r in rows] == [list(DEFAULT_OBJECTIVES)] * 2
    assert rows[0]["helpfulness"] > rows[1]["helpfulness"]
    assert rows == score_answers([prompt, prompt], [relevant, irrelevant], raters)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 prompts but 1 answers"):
        ConcisenessRater().score(["a", "b"], ["x"])
