"""GemNet-T decoder: symmetries, batch independence, gradients, a tiny overfit, graph helpers."""

from __future__ import annotations

import itertools

import pytest
import torch

from benchmark.nn.dimenet import build_triplets
from benchmark.nn.gemnet import GemNetTDecoder, count_parameters, gemnet_triplets, symmetrize_edges

@pytest.fixture(autouse=True)
def _one_thread():
    """These graphs are tiny: intra-op threads only add synchronisation, which on a busy 2-core
    machine made the overfit test ~6x slower (and building the full-size model, a few hundred QR
    factorisations, ~30x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


SMALL = dict(hidden_dim=16, latent_dim=8, max_atomic_num=10, cutoff=4.0, num_blocks=2, emb_size_trip=8,
             emb_size_rbf=4, emb_size_cbf=4, emb_size_bil_trip=8, num_spherical=3, num_radial=4, num_atom=1)


def cubic_graph(frac: torch.Tensor, a: float, cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Brute-force periodic graph of one cubic cell: every (j, i, image in {-1,0,1}^3) with
    ``0 < |pos_j + image * a - pos_i| < cutoff``. Returns edge_index (2, E), edge_vec (E, 3),
    images (E, 3)."""
    pos = frac.double() * a
    src, dst, vecs, imgs = [], [], [], []
    for image in itertools.product((-1, 0, 1), repeat=3):
        shift = torch.tensor(image, dtype=torch.float64) * a
        vec = pos[:, None, :] + shift - pos[None, :, :]  # (j, i, 3)
        d = vec.norm(dim=-1)
        j, i = torch.nonzero((d > 1e-8) & (d < cutoff), as_tuple=True)
        src.append(j)
        dst.append(i)
        vecs.append(vec[j, i])
        imgs.append(torch.tensor(image).expand(j.numel(), 3))
    return torch.stack([torch.cat(src), torch.cat(dst)]), torch.cat(vecs), torch.cat(imgs)


def make_batch(sizes=(3, 4), seed=0, a=4.0, cutoff=4.0, drop=0.0):
    """Random cubic crystals concatenated into one batch; ``drop`` removes that fraction of edges
    (like a KNN truncation, so some reverses are missing)."""
    g = torch.Generator().manual_seed(seed)
    types, batch, edges, vecs, imgs = [], [], [], [], []
    offset = 0
    for b, n in enumerate(sizes):
        frac = torch.rand(n, 3, generator=g)
        ei, ev, im = cubic_graph(frac, a, cutoff)
        if drop > 0:
            keep = torch.rand(ei.shape[1], generator=g) >= drop
            ei, ev, im = ei[:, keep], ev[keep], im[keep]
        types.append(torch.randint(1, 11, (n,), generator=g))
        batch.append(torch.full((n,), b))
        edges.append(ei + offset)
        vecs.append(ev)
        imgs.append(im)
        offset += n
    z = torch.randn(len(sizes), SMALL["latent_dim"], generator=g, dtype=torch.float64)
    return z, torch.cat(types), torch.cat(batch), torch.cat(edges, dim=1), torch.cat(vecs), torch.cat(imgs)


def small_model(seed=0, **overrides) -> GemNetTDecoder:
    torch.manual_seed(seed)
    return GemNetTDecoder(**{**SMALL, **overrides}).double()


def random_rotation(seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("drop", [0.0, 0.3])
def test_rotation_equivariance(drop):
    z, types, batch, ei, ev, _ = make_batch(drop=drop)
    model = small_model()
    model.fit_scale_factors(z, types, batch, ei, ev)
    rot = random_rotation()
    with torch.no_grad():
        pred, logits = model(z, types, batch, ei, ev)
        pred_r, logits_r = model(z, types, batch, ei, ev @ rot.T)
    assert pred.shape == (types.numel(), 3) and logits.shape == (types.numel(), SMALL["max_atomic_num"])
    assert pred.abs().max() > 1e-6
    torch.testing.assert_close(pred_r, pred @ rot.T, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits_r, logits, rtol=1e-9, atol=1e-9)


def test_permutation_equivariance():
    z, types, batch, ei, ev, _ = make_batch(sizes=(3, 4), drop=0.2)
    model = small_model(periodic_triplets=True)
    n = types.numel()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))  # new atom t = old atom perm[t]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    eperm = torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(2))  # edge order too
    with torch.no_grad():
        pred, logits = model(z, types, batch, ei, ev)
        pred_p, logits_p = model(z, types[perm], batch[perm], inv[ei[:, eperm]], ev[eperm])
    torch.testing.assert_close(pred_p, pred[perm], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits_p, logits[perm], rtol=1e-9, atol=1e-9)


def test_batch_matches_single_crystals():
    """No leakage across crystals: a two-crystal batch gives each crystal's own outputs."""
    z, types, batch, ei, ev, _ = make_batch(sizes=(3, 4), drop=0.2)
    model = small_model()
    with torch.no_grad():
        pred, logits = model(z, types, batch, ei, ev)
        for b in range(2):
            atoms = torch.nonzero(batch == b).squeeze(1)
            first = int(atoms[0])
            emask = batch[ei[1]] == b
            pb, lb = model(z[b:b + 1], types[atoms], torch.zeros_like(atoms), ei[:, emask] - first, ev[emask])
            torch.testing.assert_close(pb, pred[atoms], rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(lb, logits[atoms], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("type_head", ["output_blocks", "last_hidden"])
@pytest.mark.parametrize("radial_basis", ["bessel", "gaussian"])
def test_gradients_reach_all_parameters(type_head, radial_basis):
    z, types, batch, ei, ev, _ = make_batch()
    model = small_model(type_head=type_head, radial_basis=radial_basis)
    pred, logits = model(z, types, batch, ei, ev)
    (pred.pow(2).sum() + logits.pow(2).sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_overfit_vector_output():
    z, types, batch, ei, ev, _ = make_batch(sizes=(4,), seed=3)
    z, ev = z.float(), ev.float()
    torch.manual_seed(0)
    model = GemNetTDecoder(**{**SMALL, "hidden_dim": 32})
    target = torch.randn(types.numel(), 3, generator=torch.Generator().manual_seed(4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        pred, _ = model(z, types, batch, ei, ev)
        loss = (pred - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10, (losses[0], losses[-10:])


def test_symmetrize_edges_adds_missing_reverses():
    _, _, _, ei, ev, im = make_batch(sizes=(3, 2), drop=0.3)
    num_nodes = 5
    ei2, ev2, swap = symmetrize_edges(ei, ev, num_nodes)
    e = ei.shape[1]
    assert torch.equal(ei2[:, :e], ei) and torch.equal(ev2[:e], ev)  # input edges first, unchanged
    assert torch.equal(swap[swap], torch.arange(ei2.shape[1]))
    assert torch.equal(ei2[0, swap], ei2[1]) and torch.equal(ei2[1, swap], ei2[0])
    torch.testing.assert_close(ev2[swap], -ev2)
    # exactly the edges whose reverse was dropped were added
    full_ei, full_ev, _ = symmetrize_edges(*make_batch(sizes=(3, 2))[3:5], num_nodes)
    assert full_ei.shape[1] == make_batch(sizes=(3, 2))[3].shape[1]  # a complete graph gains nothing
    assert ei2.shape[1] > e
    # integer images pair edges the same way as vectors
    _, _, swap_img = symmetrize_edges(ei, ev, num_nodes, images=im)
    assert torch.equal(swap_img, swap)


def test_periodic_triplets_in_one_atom_cell():
    """In a one-atom cell every neighbour is an image of the atom itself: the atom-index rule of
    build_triplets leaves no triplets; GemNet's rule drops only each edge's own reverse."""
    ei, ev, _ = cubic_graph(torch.zeros(1, 3), 3.0, 3.5)  # 6 nearest images
    ei, ev, swap = symmetrize_edges(ei, ev, 1)
    assert build_triplets(ei, 1)[0].numel() == 0
    idx_kj, idx_ji, ragged, kmax = gemnet_triplets(ei, 1, swap)
    e = ei.shape[1]
    assert idx_kj.numel() == e * (e - 1) and kmax == e - 1
    assert not torch.any(idx_kj == swap[idx_ji])
    assert torch.equal(ragged, torch.arange(e - 1).repeat(e))
    model = small_model()
    pred, logits = model(torch.zeros(1, SMALL["latent_dim"], dtype=torch.float64), torch.tensor([6]),
                         torch.zeros(1, dtype=torch.long), ei, ev)
    torch.testing.assert_close(pred, torch.zeros(1, 3, dtype=torch.float64))  # cubic symmetry
    assert torch.isfinite(logits).all()


def test_coincident_atoms_stay_finite():
    z, types, batch, ei, ev, _ = make_batch(sizes=(3,))
    extra = torch.tensor([[0, 1], [1, 0]])  # atoms 0 and 1 on top of each other
    ei = torch.cat([ei, extra], dim=1)
    ev = torch.cat([ev, torch.zeros(2, 3, dtype=torch.float64)])
    model = small_model()
    pred, logits = model(z, types, batch, ei, ev)
    (pred.sum() + logits.sum()).backward()
    assert torch.isfinite(pred).all() and torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_published_size_parameter_count():
    """CDVAE appendix B.3: the decoder has 2.3 million parameters at hidden size 128."""
    n = count_parameters(GemNetTDecoder())
    assert 2.25e6 < n < 2.40e6, n


def test_graph_without_edges():
    model = small_model()
    pred, logits = model(torch.zeros(1, SMALL["latent_dim"], dtype=torch.float64), torch.tensor([3, 4]),
                         torch.zeros(2, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long),
                         torch.zeros(0, 3, dtype=torch.float64))
    assert torch.equal(pred, torch.zeros(2, 3, dtype=torch.float64))
    assert logits.shape == (2, SMALL["max_atomic_num"]) and torch.isfinite(logits).all()
