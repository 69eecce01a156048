"""The rectified-flow path, one definition for training and sampling.

A clean latent x0 and noise eps are joined on a straight line: x_sigma = (1 - sigma) * x0 + sigma * eps,
sigma in [0, 1] (1 = pure noise). The model predicts the velocity along that line, v = eps - x0, and is
told the noise level on the 0..1000 timestep scale. Condition frames stay clean and are shown to the model
at the schedule's last timestep (the reference's choice, not 0), in training as in sampling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plain arithmetic on tensors: no torch import needed
    import torch

NUM_TRAIN_TIMESTEPS = 1000


def noisy(x0: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor:
    """A point on the path at noise level sigma (broadcast against x0)."""
    return (1 - sigma) * x0 + sigma * noise


def velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The training target: the path's velocity d x_sigma / d sigma."""
    return noise - x0


def denoised_from_velocity(x: torch.Tensor, v: torch.Tensor, sigma) -> torch.Tensor:
    """The clean latent the model points at from x_sigma (what live previews show)."""
    return x - sigma * v


def model_timestep(sigma):
    """Noise level on the model's 0..1000 timestep scale."""
    return sigma * NUM_TRAIN_TIMESTEPS


def condition_timestep(timesteps: torch.Tensor) -> torch.Tensor:
    """The timestep at which given (clean) frames are shown: the schedule's last one."""
    return timesteps[-1]
