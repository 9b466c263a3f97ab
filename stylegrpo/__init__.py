"""stylegrpo: teach one LoRA on a Llasa TTS model many speaking styles with GRPO."""

__version__ = "0.1.0"
