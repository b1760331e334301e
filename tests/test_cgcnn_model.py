"""The CGCNN network against the paper's equations, computed by hand on a two-atom graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from trainables.models.cgcnn import CGCNN, CGCNNConv


def softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def batch_norm(x: np.ndarray, mean: np.ndarray, var: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return (x - mean) / np.sqrt(var + 1e-5) * weight + bias


def eval_statistics(bn: torch.nn.BatchNorm1d) -> list[np.ndarray]:
    return [t.detach().numpy() for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias)]


def two_atom_graph():
    """Atom 0 has two neighbours (atom 1 and a periodic image of it), atom 1 has one (atom 0)."""
    x = np.array([[0.5, -1.0], [1.5, 0.25]])  # F = 2
    edges = np.array([[1, 1, 0], [0, 0, 1]])  # row 0 neighbour j, row 1 centre i
    edge_attr = np.array([[1.0, 0.0, 0.2], [0.1, 0.7, 0.0], [0.0, 0.3, 0.9]])  # G = 3
    return x, edges, edge_attr


def fixed_layer(rng: np.random.Generator) -> CGCNNConv:
    layer = CGCNNConv(atom_fea_len=2, nbr_fea_len=3)
    with torch.no_grad():
        for module in (layer.fc_full, layer.bn1, layer.bn2):
            for parameter in module.parameters():
                parameter.copy_(torch.as_tensor(rng.normal(size=parameter.shape)))
        for bn in (layer.bn1, layer.bn2):
            bn.running_mean.copy_(torch.as_tensor(rng.normal(size=bn.running_mean.shape)))
            bn.running_var.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, size=bn.running_var.shape)))
    return layer.double().eval()


def test_conv_layer_matches_the_papers_equations_by_hand() -> None:
    rng = np.random.default_rng(3)
    layer = fixed_layer(rng)
    x, edges, edge_attr = two_atom_graph()
    out = layer(torch.as_tensor(x), torch.as_tensor(edges), torch.as_tensor(edge_attr)).detach().numpy()

    W, b = layer.fc_full.weight.detach().numpy(), layer.fc_full.bias.detach().numpy()
    bn1, bn2 = eval_statistics(layer.bn1), eval_statistics(layer.bn2)
    summed = np.zeros_like(x)
    for (j, i), u in zip(edges.T, edge_attr, strict=True):
        z = np.concatenate([x[i], x[j], u])  # [v_i, v_j, u_ij]
        g = batch_norm(W @ z + b, *bn1)
        summed[i] += sigmoid(g[:2]) * softplus(g[2:])
    expected = softplus(x + batch_norm(summed, *bn2))
    np.testing.assert_allclose(out, expected, rtol=1e-10)
    # The residual goes through softplus, so every output is positive (CGConv's x + ... is not).
    assert (out > 0).all()


def test_conv_layer_training_mode_uses_batch_statistics() -> None:
    rng = np.random.default_rng(4)
    layer = fixed_layer(rng).train()
    x, edges, edge_attr = two_atom_graph()
    out = layer(torch.as_tensor(x), torch.as_tensor(edges), torch.as_tensor(edge_attr)).detach().numpy()

    W, b = layer.fc_full.weight.detach().numpy(), layer.fc_full.bias.detach().numpy()
    z = np.stack([np.concatenate([x[i], x[j], u]) for (j, i), u in zip(edges.T, edge_attr, strict=True)])
    pre = z @ W.T + b  # [E, 2F]; BN over the three edges with their own (biased) variance
    g = batch_norm(pre, pre.mean(0), pre.var(0), layer.bn1.weight.detach().numpy(), layer.bn1.bias.detach().numpy())
    messages = sigmoid(g[:, :2]) * softplus(g[:, 2:])
    summed = np.zeros_like(x)
    np.add.at(summed, edges[1], messages)
    normed = batch_norm(summed, summed.mean(0), summed.var(0), layer.bn2.weight.detach().numpy(),
                        layer.bn2.bias.detach().numpy())
    np.testing.assert_allclose(out, softplus(x + normed), rtol=1e-8)


def test_model_head_applies_softplus_to_the_pooled_vector() -> None:
    model = CGCNN(4, 3, atom_embedding_size=2, num_graph_conv_layers=1, fc_feat_size=5, num_fc_layers=2).double()
    model.eval()
    x, edges, edge_attr = two_atom_graph()
    graph = Data(x=torch.as_tensor(np.hstack([x, x])), edge_index=torch.as_tensor(edges),
                 edge_attr=torch.as_tensor(edge_attr))
    batch = Batch.from_data_list([graph])
    with torch.no_grad():
        atoms = model.convs[0](model.embedding(batch.x), batch.edge_index, batch.edge_attr)
        h = torch.nn.functional.softplus(atoms.mean(0))
        for linear in [m for m in model.head if isinstance(m, torch.nn.Linear)][:-1]:
            h = torch.nn.functional.softplus(linear(h))
        expected = model.head[-1](h)
        assert model(batch).item() == pytest.approx(expected.item(), rel=1e-12)
    assert isinstance(model.head[0], torch.nn.Softplus)


def test_model_rejects_zero_sizes() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CGCNN(4, 3, num_graph_conv_layers=0)


def test_per_atom_projection_equals_the_concatenated_product_in_float32() -> None:
    """Issue 30: W [v_i, v_j, u_ij] computed as W_i v_i + W_j v_j + W_u u_ij: the same outputs and gradients."""
    from experiments.benchmarks.cgcnn_input import concatenated_conv

    torch.manual_seed(0)
    layer = CGCNNConv(atom_fea_len=8, nbr_fea_len=41).train()
    n, e = 60, 720
    x = torch.randn(n, 8, requires_grad=True)
    edge_index = torch.stack([torch.randint(0, n, (e,)), torch.arange(n).repeat_interleave(12)])
    edge_attr = torch.rand(e, 41)
    outputs, grads = [], []
    for forward in (layer, lambda *a: concatenated_conv(layer, *a)):
        out = forward(x, edge_index, edge_attr)
        out.pow(2).sum().backward()
        outputs.append(out.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in layer.parameters()])
        x.grad = None
        layer.zero_grad()
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    scale = max(float(g.abs().max()) for g in grads[1])
    for new, old in zip(*grads, strict=True):
        # Sums over 720 edges through batch norm's backward (which subtracts means): float32 rounding
        # shows on elements near zero (fc_full's bias gradient is zero but for rounding: batch norm
        # removes any shift), so the tolerance is relative to the gradients' scale.
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5 * scale)
