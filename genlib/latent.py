"""Latent vs pixel generation on ``shapes`` (chapter 09, section 4).

The same generator family twice: a class-conditional flow-matching ``TinyUNet`` (chapter 07) on
pixels, (N, 3, 16, 16), and on the latent of chapter 08's shipped VQ tokenizer, (N, 16, 8, 8) —
the encoder output snapped to its codebook. A latent sample is decoded by snapping it to the
nearest code vectors again and running the tokenizer's decoder.

The latent has *more* numbers than the image (1,024 vs 768) but 4× fewer spatial positions, and a
convolution's cost grows with positions × channels²: the saving comes from the positions (the
same holds for latent diffusion, where f = 8 also means 64× fewer positions).

=======================  ====================================================================
``class_labels``         shape, colour, size → one of 48 class labels (and back: ``attributes``)
``unet``                 chapter 07's TinyUNet with ``channels`` in and out, 48 classes
``VQLatent``             encode images to normalised latents, decode latents to images
=======================  ====================================================================
"""
from __future__ import annotations

import torch
from torch import nn

from genlib.diffusion import TinyUNet
from genlib.tokens import quantize

N_CLASSES = 4 * 6 * 2   # shape × colour × size


def class_labels(shape: torch.Tensor, color: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """(N,) attribute indices → (N,) labels in 0..47."""
    return shape * 12 + color * 2 + size


def attributes(y: torch.Tensor):
    """Inverse of ``class_labels``: (shape, color, size)."""
    return y // 12, (y // 2) % 6, y % 2


def unet(channels: int, ch: int = 32, emb: int = 64, seed: int = 0) -> TinyUNet:
    """A TinyUNet (velocity model, flow time in [0, 1]) for ``channels``-channel inputs of any even
    size; the body is the same for pixels and latents, only the first and last convolutions differ."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = TinyUNet(ch=ch, emb=emb, n_classes=N_CLASSES)
        m.inp = nn.Conv2d(channels, ch, 3, padding=1)
        m.out[-1] = nn.Conv2d(ch, channels, 3, padding=1)
    return m


class VQLatent:
    """Images (N, 3, 16, 16) in [-1, 1] ⇄ latents (N, 16, 8, 8) with mean 0 and std 1.

    ``encode``: the VQ encoder, snapped to the codebook, then standardised by one scalar mean and
    std measured on ``reference`` images (what Stable Diffusion's scale factor 0.18215 does).
    ``decode``: undo the scaling, snap to the nearest code vectors, run the VQ decoder.
    """

    def __init__(self, vq=None, reference: torch.Tensor | None = None):
        if vq is None:
            from genlib import t2i
            vq = t2i.load("vq")
        self.vq = vq
        if reference is None:
            from genlib.data import shapes
            reference = shapes(1000, seed=0).images
        with torch.no_grad():
            z = quantize(vq.encoder(reference), vq.codebook)[0]
        self.mean, self.std = z.mean().item(), z.std().item()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = quantize(self.vq.encoder(x), self.vq.codebook)[0]
        return (z - self.mean) / self.std

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z_q = quantize(z * self.std + self.mean, self.vq.codebook)[0]
        return self.vq.decoder(z_q)
