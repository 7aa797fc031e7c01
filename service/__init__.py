"""The HTTP service: FastAPI on uvicorn, ONNX Runtime for the model, FAISS for the gallery (no torch)."""
