"""Evaluation maths for generated videos: Frechet distances (FID, FVD), CLIPScore, image-quality
scorers, and people's ratings (MOS) with confidence intervals."""
