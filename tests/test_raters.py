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
    distinct_sentences,
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
    ("What is recursion in programming?",
     "Recursion is when a function calls itself on a smaller version of the problem until it reaches a base case.",
     "Tomatoes grow best in warm, sunny places with regular watering."),
    ("How can I save money on groceries?",
     "Plan your meals, make a shopping list, buy store brands and avoid shopping when hungry.",
     "The Moon is about 384,000 kilometres away from the Earth."),
    ("What should I pack for a weekend trip?",
     "Pack two changes of clothes, a toothbrush, a phone charger and any medicine you need.",
     "Photosynthesis turns light, water and carbon dioxide into sugar."),
]

SIMPLE_VS_JARGON = [
    ("The sun is hot. It gives us light. Plants need it to grow.",
     "Photosynthetic organisms utilize electromagnetic radiation to synthesize carbohydrates "
     "via chlorophyll-mediated biochemical pathways."),
    ("Wash your hands with soap. Rub them well. Then rinse.",
     "Comprehensive antimicrobial hygiene necessitates systematic application of surfactant formulations."),
    ("A loop runs the same code again and again.",
     "Iterative constructs facilitate repeated execution of encapsulated instructional sequences "
     "contingent upon conditional evaluation."),
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
    scores = helpfulness.score([prompt] * 4, ["", "   ", "The weather is nice today.", RELEVANCE_PAIRS[0][1]])
    assert scores[0] == scores[1] == 0.0
    assert min(scores) == 0.0 and scores[3] > 0.3


def test_restating_the_question_is_not_an_answer(helpfulness):
    prompt = "Why do some animals hibernate?"
    echo, echo_plus_junk, answer = helpfulness.score([prompt] * 3, [
        "Why do some animals hibernate?",
        "why do some  animals hibernate? I like trains.",
        "Animals hibernate to save energy when food is scarce in winter.",
    ])
    assert echo == 0.0
    assert echo_plus_junk < answer - 0.3


# Two distinct relevant sentences, and an unrelated one, for "How do I boil an egg?".
EGG = "How do I boil an egg?"
EGG_STEP_1 = "Put the egg in a pot of boiling water for about nine minutes."
EGG_STEP_2 = "Then cool the boiled egg in cold water so that it peels easily."
UNRELATED = "The stock market closed higher today after strong earnings reports."


def test_helpfulness_grows_with_relevant_content(helpfulness):
    one, two = helpfulness.score([EGG] * 2, [EGG_STEP_1, f"{EGG_STEP_1} {EGG_STEP_2}"])
    assert two > one + 0.2


def test_repeating_a_sentence_adds_nothing(helpfulness):
    once, twice, shouted = helpfulness.score([EGG] * 3, [
        EGG_STEP_1, f"{EGG_STEP_1} {EGG_STEP_1}", f"{EGG_STEP_1}\n{EGG_STEP_1.upper()}!"])
    assert once == twice == shouted


def test_off_topic_padding_adds_little(helpfulness):
    answer, padded, more_content = helpfulness.score([EGG] * 3, [
        EGG_STEP_1, f"{EGG_STEP_1} {UNRELATED}", f"{EGG_STEP_1} {EGG_STEP_2}"])
    assert padded - answer < 0.1
    assert more_content - answer > 3 * (padded - answer)


def test_helpfulness_is_the_formula_over_embeddings(helpfulness):
    # content: log(1 + sum of words x clipped cosine over distinct sentences); answer: one cosine of the whole text.
    from lwdpo_edge.raters import _load_encoder, count_words

    encoder = _load_encoder(helpfulness.model_path)
    text = f"{EGG_STEP_1} {EGG_STEP_2} {UNRELATED}"
    sentences = [EGG_STEP_1.rstrip("."), EGG_STEP_2.rstrip("."), UNRELATED.rstrip(".")]
    emb = encoder.encode([EGG, *sentences, text], normalize_embeddings=True)
    cosines = emb[1:4] @ emb[0]
    want_content = math.log1p(sum(count_words(t) * max(0.0, float(c)) for t, c in zip(sentences, cosines)))
    assert helpfulness.score([EGG], [text])[0] == pytest.approx(want_content, abs=2e-4)
    whole = HelpfulnessRater(aggregate="answer")
    assert whole.score([EGG], [text])[0] == pytest.approx(float(emb[4] @ emb[0]), abs=2e-4)
    assert whole.score([EGG], [""])[0] == -1.0


def test_cutting_the_same_content_into_fragments_does_not_pay(helpfulness):
    one, fragments = helpfulness.score([RELEVANCE_PAIRS[1][0]] * 2, [
        "Sunlight is scattered by the molecules of the air, and blue light is scattered much more than red light, "
        "so the sky looks blue from every direction.",
        "Sunlight hits the air. The air has molecules. Molecules scatter light. Blue light scatters more. "
        "Red light scatters less. So the sky looks blue.",
    ])
    assert fragments <= one


def test_unknown_helpfulness_aggregate_is_refused():
    with pytest.raises(ValueError, match="content"):
        HelpfulnessRater(aggregate="mean")


def test_distinct_sentences_drop_fragments_and_repeats():
    text = "1. **Watering**\nWater the plant once a week. water the plant ONCE a week!\nGive it bright light."
    assert distinct_sentences(text) == ["Water the plant once a week", "Give it bright light"]
    assert distinct_sentences("Paris.") == ["Paris."]  # no long-enough sentence: the whole text
    assert distinct_sentences("  ...  ") == []


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
