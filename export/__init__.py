"""Export stage (installed as lwdpo_edge.export). GGUF / ONNX export arrives with the export issue."""
