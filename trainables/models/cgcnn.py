"""Crystal Graph Convolutional Neural Network (Xie & Grossman, PRL 120, 145301, 2018).

The architecture of the paper and of its reference code (``txie-93/cgcnn``, ``cgcnn/model.py``):
atom features are embedded, refined by N gated graph convolutions over the crystal graph
(:class:`CGCNNConv`, the reference ``ConvLayer``), mean-pooled per structure, passed through
softplus and M fully connected layers, and read out as one scalar (here an adsorption energy).

The convolution differs from torch_geometric's ``CGConv`` in two places that matter for
hyperparameter search (depth and learning rate behave differently without them): the 2F
gate/core pre-activations are batch-normalised, and softplus follows the residual sum.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.nn import MessagePassing, global_mean_pool


class CGCNNConv(MessagePassing):
    """The paper's gated convolution (txie-93/cgcnn ``ConvLayer``) as a message-passing layer.

    For centre atom i with neighbours j (edges j -> i, periodic images included):

        z_ij  = [v_i, v_j, u_ij]                                   # [2F + G]
        g_ij  = BN_2F(W z_ij + b)                                   # [2F], BN over all edges
        gate, core = g_ij[:F], g_ij[F:]
        v_i'  = softplus(v_i + BN_F(sum_j sigmoid(gate) * softplus(core)))

    Args:
        atom_fea_len: F, the atom feature length (input and output).
        nbr_fea_len: G, the edge (Gaussian-expanded distance) feature length.

    Input: ``x`` [N, F], ``edge_index`` [2, E] (row 0 neighbour j, row 1 centre i),
    ``edge_attr`` [E, G]. Output: [N, F].

    ``W z_ij + b`` is computed as ``W_i v_i + W_j v_j + (W_u u_ij + b)``, with ``W = [W_i, W_j, W_u]``
    (the same ``fc_full`` parameters): the two atom terms once per atom, then gathered per edge,
    rather than per edge on the concatenation (E is about 12 N). The same arithmetic in another
    summation order: results agree with the concatenated form to float rounding (~1e-7 relative),
    and an epoch on one CPU thread takes about half the time in this layer.
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__(aggr="add")
        self.atom_fea_len = atom_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        f, weight = self.atom_fea_len, self.fc_full.weight
        # W_i v and W_j v for every atom in one product: [N, 4F] -> centre, neighbour terms [N, 2F] each.
        centre, neighbour = nn.functional.linear(x, torch.cat([weight[:, :f], weight[:, f : 2 * f]])).split(2 * f, -1)
        summed = self.propagate(edge_index, centre=centre, neighbour=neighbour, edge_attr=edge_attr)  # [N, F]
        return nn.functional.softplus(x + self.bn2(summed))

    def message(self, centre_i: torch.Tensor, neighbour_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        edge_term = nn.functional.linear(edge_attr, self.fc_full.weight[:, 2 * self.atom_fea_len :], self.fc_full.bias)
        gated = self.bn1(centre_i + neighbour_j + edge_term)  # [E, 2F] = BN(W z_ij + b)
        # Each half copied to contiguous memory: on strided halves torch's CPU softplus and sigmoid
        # fall back to scalar loops, about 10x slower than the copy and the vectorised kernels.
        gate, core = (half.contiguous() for half in gated.chunk(2, dim=-1))
        return torch.sigmoid(gate) * nn.functional.softplus(core)  # [E, F]


class CGCNN(nn.Module):
    """CGCNN regressor (txie-93/cgcnn ``CrystalGraphConvNet``).

    Args:
        node_feature_dim: length of each input atom feature vector (``orig_atom_fea_len``).
        edge_feature_dim: length of each edge (Gaussian-expanded distance) feature vector (``nbr_fea_len``).
        atom_embedding_size: hidden atom feature length (the paper's ``atom_fea_len``).
        num_graph_conv_layers: number of convolution layers (``n_conv``).
        fc_feat_size: hidden length after pooling (``h_fea_len``).
        num_fc_layers: fully connected layers after pooling (``n_h``), at least 1.

    Input: a batch of graphs, a torch_geometric ``Batch`` or a ``trainables.data.packed.GraphBatch``
    (the same fields), with ``x`` [num_atoms, node_feature_dim], ``edge_index`` [2, num_edges],
    ``edge_attr`` [num_edges, edge_feature_dim], ``batch`` [num_atoms] and ``num_graphs``.
    Output: [num_graphs] predictions.
    """

    def __init__(
        self,
        node_feature_dim: int,
        edge_feature_dim: int,
        atom_embedding_size: int = 64,
        num_graph_conv_layers: int = 3,
        fc_feat_size: int = 128,
        num_fc_layers: int = 1,
    ) -> None:
        super().__init__()
        if min(atom_embedding_size, num_graph_conv_layers, fc_feat_size, num_fc_layers) < 1:
            raise ValueError("CGCNN sizes and layer counts must be at least 1")
        self.embedding = nn.Linear(node_feature_dim, atom_embedding_size)
        self.convs = nn.ModuleList(
            CGCNNConv(atom_embedding_size, edge_feature_dim) for _ in range(num_graph_conv_layers)
        )
        # As in the reference: softplus on the pooled vector, then (Linear, softplus) x n_h, then the output.
        layers: list[nn.Module] = [nn.Softplus(), nn.Linear(atom_embedding_size, fc_feat_size), nn.Softplus()]
        for _ in range(num_fc_layers - 1):
            layers += [nn.Linear(fc_feat_size, fc_feat_size), nn.Softplus()]
        self.head = nn.Sequential(*layers, nn.Linear(fc_feat_size, 1))

    def forward(self, batch: Any) -> torch.Tensor:
        x = self.embedding(batch.x)  # [num_atoms, atom_embedding_size]
        for conv in self.convs:
            x = conv(x, batch.edge_index, batch.edge_attr)
        # The graph count given, not found as batch.max() + 1: that would read it back from a GPU every step.
        pooled = global_mean_pool(x, batch.batch, size=batch.num_graphs)  # [num_graphs, atom_embedding_size]
        return self.head(pooled).squeeze(-1)  # [num_graphs]
