"""The *Prior* of Con-CDVAE: a conditional DDPM on the VAE latent z ("Step-two" training).

Ye, Weng, Wu, "Con-CDVAE: A method for the conditional generation of
crystal structures" (equation numbers below are that paper's), section 2.2.2, and its released
code (github cyye001/Con-CDVAE, ``concdvae/pl_prior/model.py`` and ``conf/prior/default.yaml``).

After step one the encoder is frozen and the Prior learns ``p(z | c)`` with z the encoder result
of the training crystals ("we use the result of *Encoder* as label"; the released code uses the
encoder *mean* mu, not a reparameterised sample) and c the property embedding ``C_prop`` of the
Prior's own condition embedding ``Prior_Emb`` (section 2.2.2; any module mapping a condition dict
to (B, cond_dim), in Con-CDVAE a :class:`benchmark.models.con_cdvae.network.PropEmb`). The Prior is a
DDPM (section 2.1, Eq. 3):

* Forward process: ``z^t = sqrt(alpha_bar_t) z + sqrt(1 - alpha_bar_t) eps_z``, ``eps_z ~ N(0, I)``,
  ``alpha_bar_t = prod_{i <= t} (1 - beta_i)``, t uniform in 1..T (the paper writes alpha_t for
  alpha_bar_t in section 2.2.2).
* Loss, Eq. 14: ``L_prior = E ||eps_hat_z - eps_z||^2`` with ``eps_hat_z = Prior_Decode(z^t, C_prop,
  t)``. Averaged over the latent components as well as the batch (``F.mse_loss``, as the released
  code; Eq. 14's squared norm is ``latent_dim`` times this, a constant factor).
* Sampling: ancestral DDPM steps from ``z^T ~ N(0, I)``,
  ``z^{t-1} = (z^t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(1 - beta_t) + sigma_t eps``,
  ``sigma_t^2 = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`` (the posterior variance, as the
  released code), no noise in the last step; the step itself is
  :func:`benchmark.nn.diffusion.ddpm_reverse_step` (its ``"eq6"`` form). Fewer steps than T
  (``num_steps``) visit evenly spaced time steps with the effective ``alpha = alpha_bar_t /
  alpha_bar_t'`` (respacing, Nichol & Dhariwal 2021); with all T steps it is plain DDPM.

``Prior_Decode`` (:class:`ResidualMLPDenoiser`): "six layers of neurons. The number of neurons in
the first three layers decreases layer by layer, and the number of neurons in the last three
layers increases layer by layer. There is a residual structure between the layers with the same
number of neurons." Details from the released ``UNet``: widths latent -> latent/2 -> latent/4 ->
latent/8 (down), a middle layer at latent/8, then up to latent/4, latent/2, latent; every layer is
``ReLU(Linear([h, c, temb]))``, i.e. the condition and time embeddings are concatenated to the
input of *every* layer; the residual adds each down layer's output to the input of the up layer of
the same width, and the original z^t to the last up layer's output, before a final linear layer
``Linear([h, c, temb]) -> latent``.

Time embedding: the sinusoidal embedding of t (:func:`benchmark.nn.diffusion.timestep_embedding`)
followed by ``Linear(time_dim, time_dim) + ReLU`` (released code; its sinusoid uses
``10000^(-k / (half - 1))`` frequencies, here ``10000^(-k / half)``, and it numbers the steps
0..T-1 where t here runs 1..T: the same schedule, the embedding's input shifted by one; both are
immaterial for a prior trained from scratch, but released prior weights would need them).

Defaults (:class:`LatentPrior` arguments; the paper gives none of these numbers): linear beta
schedule (:class:`benchmark.nn.schedules.LinearBetaSchedule`) 1e-3 -> 0.02 over T = 300 steps, time embedding 64, three halving levels
(released ``conf/prior/default.yaml``: ``ddpm_noise_start 0.001, ddpm_noise_end 0.02,
ddpm_n_noise 300, time_emb_dim 64, n_UNet_layers 3``). ``schedule="sigmoid"`` instead uses
DP-CDVAE's :class:`~benchmark.nn.schedules.SigmoidBetaSchedule` (not Con-CDVAE's).

Random numbers (t, noise, z^T, step noise) take an explicit ``torch.Generator``.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.nn.diffusion import ddpm_reverse_step, timestep_embedding
from benchmark.nn.rng import randint, randn
from benchmark.nn.schedules import BetaSchedule, LinearBetaSchedule, SigmoidBetaSchedule

__all__ = ["LatentPrior", "ResidualMLPDenoiser"]


class ResidualMLPDenoiser(nn.Module):
    """``Prior_Decode(z^t, C_prop, t)``: the six-layer residual MLP (section 2.2.2) predicting the
    noise eps_z (see the module docstring for the layout).

    Args:
        latent_dim: size of z.
        cond_dim: size of the condition embedding C_prop.
        time_dim: size of the (already embedded) time input.
        widths: hidden widths of the down layers, e.g. ``(128, 64, 32)`` for latent 256; the up
            layers mirror them. Empty: halve ``latent_dim`` three times (released ``n_UNet_layers=3``).
    """

    def __init__(self, latent_dim: int, cond_dim: int, time_dim: int, widths: Sequence[int] = ()) -> None:
        super().__init__()
        if not widths:
            widths = (latent_dim // 2, latent_dim // 4, latent_dim // 8)
        widths = tuple(int(w) for w in widths)
        if any(w < 1 for w in widths):
            raise ValueError(f"prior widths must be positive, got {widths} (latent_dim={latent_dim})")
        ctx = cond_dim + time_dim
        dims = (latent_dim,) + widths  # (latent, w1, .., wL)
        self.down = nn.ModuleList(nn.Linear(dims[i] + ctx, dims[i + 1]) for i in range(len(widths)))
        self.middle = nn.Linear(dims[-1] + ctx, dims[-1])
        self.up = nn.ModuleList(nn.Linear(dims[i + 1] + ctx, dims[i]) for i in reversed(range(len(widths))))
        self.out = nn.Linear(latent_dim + ctx, latent_dim)

    def forward(self, z_t: Tensor, cond: Tensor, temb: Tensor) -> Tensor:
        """Args: z_t (B, latent), cond (B, cond_dim), temb (B, time_dim). Returns (B, latent) eps_hat."""
        ctx = torch.cat([cond, temb], dim=-1)  # (B, cond + time), fed to every layer
        h = z_t
        skips: list[Tensor] = []
        for layer in self.down:  # widths decrease
            h = F.relu(layer(torch.cat([h, ctx], dim=-1)))
            skips.append(h)
        h = F.relu(self.middle(torch.cat([h, ctx], dim=-1)))
        for layer, skip in zip(self.up, reversed(skips)):  # widths increase; residual at equal widths
            h = F.relu(layer(torch.cat([h + skip, ctx], dim=-1)))
        h = h + z_t  # outermost residual (latent width)
        return self.out(torch.cat([h, ctx], dim=-1))


class LatentPrior(nn.Module):
    """Conditional DDPM on latents (the *Prior* block, section 2.2.2, Eq. 14).

    Args:
        latent_dim: size of z.
        embedding: ``Prior_Emb``, a module mapping a condition dict (name -> (B,) or (B, k)
            tensor) to (B, cond_dim) ``C_prop`` (in Con-CDVAE a
            :class:`benchmark.models.con_cdvae.network.PropEmb`; it is trained with the Prior).
        cond_dim: output size of ``embedding``.
        num_timesteps: T (released: 300).
        beta_start, beta_end: schedule ends (released: 1e-3, 0.02).
        schedule: ``"linear"`` (released) or ``"sigmoid"`` (DP-CDVAE's, with these ends).
        time_dim: sinusoidal time embedding size (released: 64).
        widths: :class:`ResidualMLPDenoiser` widths (empty: latent/2, latent/4, latent/8).
    """

    def __init__(self, latent_dim: int, embedding: nn.Module, cond_dim: int, num_timesteps: int = 300,
                 beta_start: float = 1e-3, beta_end: float = 0.02,
                 schedule: Literal["linear", "sigmoid"] = "linear", time_dim: int = 64,
                 widths: Sequence[int] = ()) -> None:
        super().__init__()
        if num_timesteps < 1:
            raise ValueError("num_timesteps must be at least 1")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        if time_dim < 2 or time_dim % 2:
            raise ValueError("time_dim must be even and at least 2")
        self.latent_dim = latent_dim
        self.num_timesteps = num_timesteps
        self.time_dim = time_dim
        self.embedding = embedding
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.ReLU())
        self.denoiser = ResidualMLPDenoiser(latent_dim, cond_dim, time_dim, widths)
        self.schedule: BetaSchedule
        if schedule == "linear":
            self.schedule = LinearBetaSchedule(num_timesteps, beta_start, beta_end)
        elif schedule == "sigmoid":
            self.schedule = SigmoidBetaSchedule(num_timesteps, beta_start, beta_end)
        else:
            raise ValueError(f"schedule must be 'linear' or 'sigmoid', got {schedule!r}")
        # derived from the arguments, so not part of the state dict; index t - 1 for t = 1..T
        self.register_buffer("alpha_bars", self.schedule.alphas_cumprod().float(), persistent=False)

    # ------------------------------------------------------------------------------ network

    def embed(self, conditions: Mapping[str, Tensor]) -> Tensor:
        """(B, cond_dim) ``C_prop = Prior_Emb(conditions)``."""
        return self.embedding(conditions)

    def predict_noise(self, z_t: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        """``eps_hat_z = Prior_Decode(z^t, C_prop, t)``.

        Args:
            z_t: (B, latent); cond: (B, cond_dim) C_prop; t: (B,) long in 1..T.

        Returns:
            (B, latent).
        """
        temb = self.time_mlp(timestep_embedding(t, self.time_dim).to(z_t.dtype))  # (B, time_dim)
        return self.denoiser(z_t, cond.to(z_t.dtype), temb)

    # ------------------------------------------------------------------------------ training

    def loss(self, z0: Tensor, conditions: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Eq. 14 on a batch of latents (one t per latent, uniform in 1..T).

        Args:
            z0: (B, latent) encoder results (detached; the encoder is frozen in step two).
            conditions: the Prior's conditions, each (B,) or (B, k).
            generator: random source of t and eps_z.

        Returns:
            scalar ``mean ||eps_hat_z - eps_z||^2 / latent_dim``.
        """
        z0 = z0.detach()
        b = z0.shape[0]
        t = randint(self.num_timesteps, (b,), generator, z0) + 1  # (B,) in 1..T
        eps = randn(tuple(z0.shape), generator, z0)  # (B, latent)
        ab = self.alpha_bars[t - 1].to(z0.dtype).unsqueeze(-1)  # (B, 1)
        z_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps  # forward process (Eq. 3)
        return F.mse_loss(self.predict_noise(z_t, self.embed(conditions), t), eps)

    # ------------------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample_from_embedding(self, cond: Tensor, generator: torch.Generator | None = None,
                              num_steps: int | None = None) -> Tensor:
        """Ancestral sampling of one z per row of ``cond``.

        Args:
            cond: (B, cond_dim) C_prop.
            generator: random source of z^T and the step noise.
            num_steps: reverse steps (None: all T; fewer respace the schedule).

        Returns:
            (B, latent) z^0.
        """
        b = cond.shape[0]
        z = randn((b, self.latent_dim), generator, cond)  # (B, latent) z^T ~ N(0, I)
        one = torch.ones((), dtype=z.dtype, device=z.device)
        steps = self.schedule.respaced_timesteps(num_steps)
        for k, t in enumerate(steps):
            t_prev = steps[k + 1] if k + 1 < len(steps) else 0
            ab_t = self.alpha_bars[t - 1].to(z.dtype)
            ab_prev = self.alpha_bars[t_prev - 1].to(z.dtype) if t_prev > 0 else one  # alpha_bar_0 = 1
            eps = self.predict_noise(z, cond, torch.full((b,), t, dtype=torch.long, device=z.device))
            noise = randn(tuple(z.shape), generator, z)  # multiplied by sigma_t = 0 in the last step
            z = ddpm_reverse_step(z, eps, ab_t, ab_prev, noise, "eq6")
        return z

    @torch.no_grad()
    def sample(self, conditions: Mapping[str, Tensor], generator: torch.Generator | None = None,
               num_steps: int | None = None) -> Tensor:
        """One z per row of the (B-row) conditions: (B, latent), see :meth:`sample_from_embedding`."""
        return self.sample_from_embedding(self.embed(conditions), generator, num_steps)
