"""The parts of the RoBERTa/RTE trainable (``trainables/roberta_rte.py``): settings, layer-wise
learning rates, the optimiser and its schedule, and the pretrained checkpoint."""
