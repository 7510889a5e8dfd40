"""SpeechGPT-Gen engine: codec, semantic LLM, perceptual models, pipeline. Never imports the UI."""

__version__ = "0.1.0"
