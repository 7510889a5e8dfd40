"""Perceptual stage: RVQ-1 units + voice prompt -> complete representation."""
