"""Periodic graph utilities (benchmark.nn.periodic) against pymatgen and brute force.

Cells are random and strongly skewed (angles 40-140 degrees, very unequal lengths, and sheared
matrices far from reduced), several crystals of different sizes are batched together, and some
cutoffs exceed the cells.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from benchmark.crystal import lattice_params_to_matrix
from benchmark.nn.periodic import (
    cart_to_frac,
    frac_to_cart,
    knn_graph_pbc,
    lattice_from_params,
    min_image_displacement,
    params_from_lattice,
    radius_graph_pbc,
    scale_lengths,
    unscale_lengths,
    wrap_frac,
)

# ------------------------------------------------------------------------------------ fixtures


def _valid_angles(angles: np.ndarray) -> bool:
    ca, cb, cg = np.cos(np.radians(angles))
    return 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg > 0.05  # (V / abc)^2 well above zero


def random_params(rng: np.random.Generator, skewed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lattice parameters: near-cubic-to-triclinic, or strongly skewed (angles 40-140, lengths 2-12)."""
    while True:
        if skewed:
            lengths = rng.uniform(2.0, 12.0, 3)
            angles = rng.uniform(40.0, 140.0, 3)
        else:
            lengths = rng.uniform(3.0, 7.0, 3)
            angles = rng.uniform(70.0, 110.0, 3)
        if _valid_angles(angles):
            return lengths, angles


def sheared_matrix(rng: np.random.Generator) -> np.ndarray:
    """A cell far from reduced: later vectors carry 1-3 times the earlier ones (nearest images can
    lie two or more cells away along an axis)."""
    a, b, c = rng.uniform(2.0, 6.0, 3)
    x, y, z = rng.choice([-1, 1], 3) * rng.uniform(1.0, 3.0, 3)
    return np.array([[a, 0.0, 0.0], [x * a, b, 0.0], [y * a, z * b, c]])


def make_batch(rng: np.random.Generator, kinds: list[str], sizes: list[int]):
    """(frac (N,3), lattice (B,3,3), num_atoms (B,)) float64 tensors plus pymatgen structures."""
    fracs, lats, structs = [], [], []
    for kind, n in zip(kinds, sizes):
        if kind == "sheared":
            lattice = sheared_matrix(rng)
        else:
            lattice = lattice_params_to_matrix(*random_params(rng, kind == "skewed"))
        frac = rng.random((n, 3))
        fracs.append(frac)
        lats.append(lattice)
        structs.append(Structure(Lattice(lattice), ["Si"] * n, frac, coords_are_cartesian=False))
    return (
        torch.tensor(np.concatenate(fracs)),
        torch.tensor(np.stack(lats)),
        torch.tensor(sizes, dtype=torch.long),
        structs,
    )


def edges_by_crystal(graph, num_atoms: torch.Tensor):
    """Per crystal: {(i_local, j_local, image): distance}."""
    ptr = np.concatenate([[0], np.cumsum(num_atoms.numpy())])
    crystal = np.searchsorted(ptr, graph.edge_index[1].numpy(), side="right") - 1
    out = [dict() for _ in range(len(num_atoms))]
    for (j, i), img, d, b in zip(graph.edge_index.T.tolist(), graph.images.tolist(), graph.distances.tolist(), crystal):
        key = (i - ptr[b], j - ptr[b], tuple(img))
        assert key not in out[b], "duplicate edge"
        out[b][key] = d
    return out


def pymatgen_edges(structure: Structure, cutoff: float):
    centers, points, images, dists = structure.get_neighbor_list(cutoff)
    return {(int(i), int(j), tuple(int(x) for x in img)): float(d) for i, j, img, d in zip(centers, points, images, dists)}


KINDS = ["random", "skewed", "sheared", "random", "skewed", "sheared", "skewed"]
SIZES = [1, 2, 3, 5, 7, 4, 6]


# ------------------------------------------------------------------------------------ lattices


def test_lattice_from_params_matches_crystal_and_pymatgen() -> None:
    rng = np.random.default_rng(0)
    params = [random_params(rng, skewed=i % 2 == 1) for i in range(20)]
    lengths = torch.tensor(np.stack([p[0] for p in params]))
    angles = torch.tensor(np.stack([p[1] for p in params]))
    ours = lattice_from_params(lengths, angles).numpy()  # (20, 3, 3)
    for k, (l, a) in enumerate(params):
        np.testing.assert_allclose(ours[k], lattice_params_to_matrix(l, a), atol=1e-12)
        np.testing.assert_allclose(ours[k], Lattice.from_parameters(*l, *a).matrix, atol=1e-10)


def test_lattice_round_trips() -> None:
    rng = np.random.default_rng(1)
    params = [random_params(rng, skewed=True) for _ in range(30)]
    lengths = torch.tensor(np.stack([p[0] for p in params]))
    angles = torch.tensor(np.stack([p[1] for p in params]))
    back_l, back_a = params_from_lattice(lattice_from_params(lengths, angles))
    torch.testing.assert_close(back_l, lengths, atol=1e-10, rtol=0)
    torch.testing.assert_close(back_a, angles, atol=1e-9, rtol=0)
    # any matrix -> params -> matrix: the same lattice up to a rotation (same metric tensor)
    mats = torch.tensor(np.stack([sheared_matrix(rng) for _ in range(10)]))
    rebuilt = lattice_from_params(*params_from_lattice(mats))
    torch.testing.assert_close(rebuilt @ rebuilt.transpose(-1, -2), mats @ mats.transpose(-1, -2), atol=1e-9, rtol=1e-9)
    # pymatgen agrees on the angles of the sheared cells
    _, ang = params_from_lattice(mats)
    for m, a in zip(mats.numpy(), ang.numpy()):
        np.testing.assert_allclose(a, Lattice(m).angles, atol=1e-9)


def test_scale_lengths() -> None:
    lengths = torch.tensor([[4.0, 5.0, 6.0], [8.0, 8.0, 8.0]], dtype=torch.float64)
    n = torch.tensor([8, 1])
    scaled = scale_lengths(lengths, n)
    torch.testing.assert_close(scaled, torch.tensor([[2.0, 2.5, 3.0], [8.0, 8.0, 8.0]], dtype=torch.float64))
    torch.testing.assert_close(unscale_lengths(scaled, n), lengths)


# ------------------------------------------------------------------------------------ coordinates


def test_frac_cart_round_trip_batched() -> None:
    rng = np.random.default_rng(2)
    frac, lat, n, _ = make_batch(rng, KINDS, SIZES)
    cart = frac_to_cart(frac, lat, n)
    ptr = np.concatenate([[0], np.cumsum(SIZES)])
    for b in range(len(SIZES)):
        np.testing.assert_allclose(cart[ptr[b] : ptr[b + 1]].numpy(), frac[ptr[b] : ptr[b + 1]].numpy() @ lat[b].numpy())
    torch.testing.assert_close(cart_to_frac(cart, lat, n), frac, atol=1e-12, rtol=0)


def test_wrap_frac() -> None:
    x = torch.tensor([[-1e-9, 1.0, 2.25], [-0.75, 0.999, -3.0]], dtype=torch.float32)
    w = wrap_frac(x)
    assert bool(((w >= 0) & (w < 1)).all())
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 0.25], [0.25, 0.999, 0.0]]), atol=1e-6, rtol=0)
    y = torch.randn(1000, 3, dtype=torch.float64) * 10
    wy = wrap_frac(y)
    assert bool(((wy >= 0) & (wy < 1)).all())
    d = y - wy
    torch.testing.assert_close(d, torch.round(d))


# ------------------------------------------------------------------------------------ minimum image


@pytest.mark.parametrize("kind", ["random", "skewed", "sheared"])
def test_min_image_matches_pymatgen(kind: str) -> None:
    rng = np.random.default_rng(3)
    sizes = [4, 9, 1, 6, 3, 8]
    frac_b, lat, n, structs = make_batch(rng, [kind] * len(sizes), sizes)
    frac_a = frac_b + torch.tensor(rng.normal(0.0, 0.6, frac_b.shape)) + torch.tensor(rng.integers(-3, 4, frac_b.shape))
    disp, images = min_image_displacement(frac_a, frac_b, lat, n, return_images=True)
    # the images reproduce the displacement
    cart = frac_to_cart(frac_a - frac_b + images.double(), lat, n)
    torch.testing.assert_close(disp, cart)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    for b, s in enumerate(structs):
        for r in range(ptr[b], ptr[b + 1]):
            dist, _ = s.lattice.get_distance_and_image(frac_b[r].numpy(), frac_a[r].numpy())
            assert disp[r].norm().item() == pytest.approx(dist, abs=1e-9)


def brute_force_min_image(f: np.ndarray, lattice: np.ndarray, reach: int = 15) -> float:
    ks = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    return float(np.linalg.norm((f + ks) @ lattice, axis=1).min())


def test_min_image_exact_where_27_images_are_not_enough() -> None:
    # b = 5a + ...: the point 0.5 b is nearest to an image two or three a-steps away, outside the
    # 27 neighbouring cells of the wrapped difference
    lattice = torch.tensor([[[1.0, 0.0, 0.0], [5.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    a = torch.tensor([[0.0, 0.5, 0.0]], dtype=torch.float64)
    b = torch.zeros(1, 3, dtype=torch.float64)
    d = min_image_displacement(a, b, lattice, torch.tensor([1]))
    assert d.norm().item() == pytest.approx(np.sqrt(0.5), abs=1e-12)
    # and on random pairs in strongly sheared cells, against an exhaustive search
    rng = np.random.default_rng(4)
    mats = [sheared_matrix(rng) for _ in range(40)]
    lat = torch.tensor(np.stack(mats))
    fa, fb = torch.tensor(rng.random((40, 3))), torch.tensor(rng.random((40, 3)))
    d = min_image_displacement(fa, fb, lat, torch.ones(40, dtype=torch.long)).norm(dim=-1)
    for r in range(40):
        assert d[r].item() == pytest.approx(brute_force_min_image((fa[r] - fb[r]).numpy(), mats[r]), abs=1e-9)


# ------------------------------------------------------------------------------------ gradients


def test_gradients() -> None:
    rng = np.random.default_rng(5)
    frac, lat, n, _ = make_batch(rng, ["random", "skewed"], [2, 3])
    frac = frac.clone().requires_grad_(True)
    lat = lat.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f, L: frac_to_cart(f, L, n), (frac, lat))
    cart = frac_to_cart(frac, lat, n).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, L: cart_to_frac(x, L, n), (cart, lat))
    other = (frac.detach() + torch.tensor(rng.normal(0, 0.3, frac.shape))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, L: min_image_displacement(a, b, L, n), (other, frac, lat))
    lengths = torch.tensor([[4.0, 5.0, 6.5], [3.0, 9.0, 4.0]], dtype=torch.float64, requires_grad=True)
    angles = torch.tensor([[80.0, 100.0, 115.0], [60.0, 70.0, 50.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lattice_from_params, (lengths, angles))
    assert torch.autograd.gradcheck(params_from_lattice, (lat,))
    # the graph's edge vectors are differentiable in the coordinates and the lattice
    assert torch.autograd.gradcheck(lambda f, L: radius_graph_pbc(f, L, n, 4.0, 6).edge_vec, (frac, lat))


# ------------------------------------------------------------------------------------ graphs


@pytest.mark.parametrize("cutoff", [3.0, 6.0, 13.0])
def test_radius_graph_matches_pymatgen(cutoff: float) -> None:
    """All pairs within the cutoff, crystals of different sizes and shapes in one call; 13 Å is
    larger than every cell (and several times the thin ones)."""
    rng = np.random.default_rng(6)
    frac, lat, n, structs = make_batch(rng, KINDS, SIZES)
    graph = radius_graph_pbc(frac, lat, n, cutoff)
    ours = edges_by_crystal(graph, n)
    for b, s in enumerate(structs):
        theirs = pymatgen_edges(s, cutoff)
        assert set(ours[b]) == set(theirs), f"crystal {b}: edges differ"
        for key, d in theirs.items():
            assert ours[b][key] == pytest.approx(d, abs=1e-9)
    # edge vectors follow the convention pos_j + images @ L - pos_i
    pos = frac_to_cart(frac, lat, n)
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), n)
    j, i = graph.edge_index
    expected = pos[j] - pos[i] + torch.einsum("ei,eij->ej", graph.images.double(), lat[batch[i]])
    torch.testing.assert_close(graph.edge_vec, expected)
    torch.testing.assert_close(graph.distances, expected.norm(dim=-1))
    assert bool((graph.distances <= cutoff).all())


def test_radius_graph_order_and_cap_matches_pymatgen() -> None:
    rng = np.random.default_rng(7)
    frac, lat, n, structs = make_batch(rng, KINDS, SIZES)
    cutoff, cap = 8.0, 12
    graph = radius_graph_pbc(frac, lat, n, cutoff, max_neighbors=cap)
    full = radius_graph_pbc(frac, lat, n, cutoff)
    ours = edges_by_crystal(graph, n)
    targets = graph.edge_index[1]
    assert bool((targets[1:] >= targets[:-1]).all()), "edges grouped by target"
    same_target = targets[1:] == targets[:-1]
    assert bool((graph.distances[1:][same_target] >= graph.distances[:-1][same_target] - 1e-9).all()), "nearest first"
    for b, s in enumerate(structs):
        theirs = pymatgen_edges(s, cutoff)
        assert set(ours[b]) <= set(theirs)
        for i in range(SIZES[b]):
            want = sorted(d for (c, _, _), d in theirs.items() if c == i)[:cap]
            got = sorted(d for (c, _, _), d in ours[b].items() if c == i)
            np.testing.assert_allclose(got, want, atol=1e-9)
    # capping the full graph gives the same edges as the capped search
    keep = torch.zeros_like(full.distances, dtype=torch.bool)
    t = full.edge_index[1]
    for i in torch.unique(t).tolist():
        keep[(t == i).nonzero().squeeze(-1)[:cap]] = True
    torch.testing.assert_close(full.edge_index[:, keep], graph.edge_index)
    torch.testing.assert_close(full.images[keep], graph.images)


def test_radius_graph_cutoff_larger_than_cell() -> None:
    # one atom in a 2 Å cube, cutoff 5 Å: only its own images, counted exactly
    lat = 2.0 * torch.eye(3, dtype=torch.float64).unsqueeze(0)
    frac = torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64)
    graph = radius_graph_pbc(frac, lat, torch.tensor([1]), 5.0)
    ks = np.array(list(itertools.product(range(-3, 4), repeat=3)))
    norms = np.linalg.norm(2.0 * ks, axis=1)
    assert graph.edge_index.shape[1] == int(((norms <= 5.0) & (norms > 0)).sum())
    assert bool((graph.edge_index == 0).all())


def test_unwrapped_coordinates_give_the_same_graph() -> None:
    rng = np.random.default_rng(8)
    frac, lat, n, _ = make_batch(rng, KINDS, SIZES)
    shifted = frac + torch.tensor(rng.integers(-4, 5, frac.shape), dtype=torch.float64)
    a = radius_graph_pbc(frac, lat, n, 6.0, 15)
    b = radius_graph_pbc(shifted, lat, n, 6.0, 15)
    torch.testing.assert_close(a.edge_index, b.edge_index)
    torch.testing.assert_close(a.edge_vec, b.edge_vec)
    j, i = b.edge_index
    delta = torch.round(shifted - frac).long()
    torch.testing.assert_close(b.images, a.images - delta[j] + delta[i])


def test_batching_chunking_and_precision_do_not_change_the_graph() -> None:
    rng = np.random.default_rng(9)
    frac, lat, n, _ = make_batch(rng, KINDS, SIZES)
    batched = radius_graph_pbc(frac, lat, n, 7.0, 20)
    chunked = radius_graph_pbc(frac, lat, n, 7.0, 20, chunk=7)
    for field in ("edge_index", "images"):
        torch.testing.assert_close(getattr(batched, field), getattr(chunked, field))
    single = radius_graph_pbc(frac[:1], lat[:1], n[:1], 7.0, 20)
    torch.testing.assert_close(batched.edge_index[:, : single.edge_index.shape[1]], single.edge_index)
    # a perovskite with exactly symmetric sites: many exact ties, broken the same way in float32
    lat_p = 3.9 * torch.eye(3).unsqueeze(0).repeat(3, 1, 1)
    frac_p = torch.tensor([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]] * 3, dtype=torch.float32)
    n_p = torch.tensor([5, 5, 5])
    g32 = radius_graph_pbc(frac_p, lat_p, n_p, 7.0, 20)
    g64 = radius_graph_pbc(frac_p.double(), lat_p.double(), n_p, 7.0, 20)
    torch.testing.assert_close(g32.edge_index, g64.edge_index)
    torch.testing.assert_close(g32.images, g64.images)
    # the three identical crystals get identical graphs
    e = g32.edge_index.shape[1] // 3
    torch.testing.assert_close(g32.edge_index[:, e : 2 * e] - 5, g32.edge_index[:, :e])
    torch.testing.assert_close(g32.images[e : 2 * e], g32.images[:e])


def test_knn_graph_matches_pymatgen() -> None:
    rng = np.random.default_rng(10)
    frac, lat, n, structs = make_batch(rng, KINDS, SIZES)
    k = 20
    graph = knn_graph_pbc(frac, lat, n, k)
    assert torch.equal(torch.bincount(graph.edge_index[1], minlength=frac.shape[0]), torch.full((frac.shape[0],), k))
    ours = edges_by_crystal(graph, n)
    for b, s in enumerate(structs):
        theirs = pymatgen_edges(s, 14.0)  # comfortably holds 20 neighbours in these cells
        for i in range(SIZES[b]):
            want = sorted(d for (c, _, _), d in theirs.items() if c == i)[:k]
            got = sorted(d for (c, _, _), d in ours[b].items() if c == i)
            np.testing.assert_allclose(got, want, atol=1e-9)
    # the same as a capped radius graph whose cutoff reaches every atom's k-th neighbour
    capped = radius_graph_pbc(frac, lat, n, 14.0, k)
    torch.testing.assert_close(capped.edge_index, graph.edge_index)
    torch.testing.assert_close(capped.images, graph.images)


def test_empty_crystals_and_bad_input() -> None:
    lat = torch.stack([4.0 * torch.eye(3), torch.full((3, 3), float("nan")), 5.0 * torch.eye(3)]).double()
    frac = torch.rand(3, 3, dtype=torch.float64)
    n = torch.tensor([2, 0, 1])
    graph = radius_graph_pbc(frac, lat, n, 6.0, 10)
    # crystal 0: two atoms in a 4 Å cube, 10 each; crystal 2: one atom in a 5 Å cube, its 6 face images
    assert torch.equal(torch.bincount(graph.edge_index[1]), torch.tensor([10, 10, 6]))
    assert bool((graph.edge_index[:, graph.edge_index[1] == 2] == 2).all())
    assert knn_graph_pbc(frac, lat, n, 4).edge_index.shape[1] == 12
    with pytest.raises(ValueError, match="sums to"):
        radius_graph_pbc(frac, lat, torch.tensor([1, 0, 1]), 6.0)
    with pytest.raises(ValueError, match="NaN"):
        radius_graph_pbc(frac.clone().fill_(float("nan")), lat, n, 6.0)
    with pytest.raises(ValueError, match="degenerate"):
        radius_graph_pbc(frac, torch.zeros(3, 3, 3, dtype=torch.float64), n, 6.0)
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph_pbc(frac, lat, n, -1.0)
    empty = radius_graph_pbc(torch.zeros(0, 3), torch.zeros(0, 3, 3), torch.zeros(0, dtype=torch.long), 5.0, 5)
    assert empty.edge_index.shape == (2, 0) and empty.edge_vec.shape == (0, 3)


def test_min_distance_drops_coincident_pairs_before_the_cap():
    """CDVAE's released decoder graph leaves out pairs within 0.01 Å (two atoms on top of each other
    have no edge direction); the cap then still keeps max_neighbors of the others, nearest first."""
    from benchmark.nn.periodic import radius_graph_pbc

    frac = torch.tensor([[0.0, 0.0, 0.0], [0.0005, 0.0, 0.0], [0.5, 0.5, 0.5], [0.25, 0.0, 0.0]], dtype=torch.float64)
    lattice = torch.eye(3, dtype=torch.float64).unsqueeze(0) * 4.0
    n = torch.tensor([4])
    full = radius_graph_pbc(frac, lattice, n, 3.0, 3)
    assert bool((full.distances < 0.01).any())  # atoms 0 and 1 are 0.002 Å apart
    graph = radius_graph_pbc(frac, lattice, n, 3.0, 3, min_distance=0.01)
    assert bool((graph.distances > 0.01).all())
    no_cap = radius_graph_pbc(frac, lattice, n, 3.0, None, min_distance=0.01)
    kept = radius_graph_pbc(frac, lattice, n, 3.0, None)
    assert len(no_cap.distances) == int((kept.distances > 0.01).sum())
    for target in range(4):
        mine = graph.distances[graph.edge_index[1] == target]
        others = torch.sort(no_cap.distances[no_cap.edge_index[1] == target]).values
        # the 3 nearest of the remaining pairs: a dropped pair frees its place for the next one
        assert torch.allclose(mine, others[:3]) and len(mine) == min(3, len(others))
    assert len(graph.distances[graph.edge_index[1] == 2]) == 3  # atom 2 has more than 3 others within 3 Å
