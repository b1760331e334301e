"""Crystal Graph Convolutional Neural Network (Xie & Grossman, PRL 120, 145301, 2018).

The architecture of the paper (and of ``txie-93/cgcnn``): atom features are embedded, refined by
N graph convolutions over the crystal graph, mean-pooled per structure, and passed through M
fully connected layers to one scalar (here an adsorption energy). The convolution is
torch_geometric's :class:`~torch_geometric.nn.CGConv`, which implements the paper's gated
convolution ``x_i' = x_i + sum_j sigmoid(z_ij W_f + b_f) * softplus(z_ij W_s + b_s)`` with
``z_ij = [x_i, x_j, e_ij]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import CGConv, global_mean_pool


class CGCNN(nn.Module):
    """CGCNN regressor.

    Args:
        node_feature_dim: length of each input atom feature vector.
        edge_feature_dim: length of each edge (Gaussian-expanded distance) feature vector.
        atom_embedding_size: hidden atom feature length (the paper's ``atom_fea_len``).
        num_graph_conv_layers: number of CGConv layers (``n_conv``).
        fc_feat_size: hidden length after pooling (``h_fea_len``).
        num_fc_layers: fully connected layers after pooling (``n_h``), at least 1.

    Input: a torch_geometric ``Batch`` with ``x`` [num_atoms, node_feature_dim],
    ``edge_index`` [2, num_edges], ``edge_attr`` [num_edges, edge_feature_dim], ``batch`` [num_atoms].
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
            CGConv(atom_embedding_size, dim=edge_feature_dim, aggr="add", batch_norm=True)
            for _ in range(num_graph_conv_layers)
        )
        layers: list[nn.Module] = [nn.Linear(atom_embedding_size, fc_feat_size), nn.Softplus()]
        for _ in range(num_fc_layers - 1):
            layers += [nn.Linear(fc_feat_size, fc_feat_size), nn.Softplus()]
        self.head = nn.Sequential(*layers, nn.Linear(fc_feat_size, 1))

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.embedding(batch.x)
        for conv in self.convs:
            x = conv(x, batch.edge_index, batch.edge_attr)
        pooled = global_mean_pool(x, batch.batch)  # [num_graphs, atom_embedding_size]
        return self.head(pooled).squeeze(-1)
