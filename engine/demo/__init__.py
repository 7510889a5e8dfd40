"""The demo profile: small models trained here on speech made offline.

``engine.demo.corpus`` builds the offline speech corpus (``python -m engine demo corpus``) from the
TTS engines wrapped in ``engine.demo.voices_tts`` and the sentences of ``engine.demo.sentences``.
"""
