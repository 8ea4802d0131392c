"""Recurrent modules whose outputs are tuples (`cpdebug bisect --torch tests/trained/rnn_models.py:FUNC`): an LSTM's
(output, (h_n, c_n)) and a GRU's (output, h_n), whose states share one shape."""

from __future__ import annotations


def _net(cell: str):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.front = torch.nn.Linear(12, 16)
            self.rnn = getattr(torch.nn, cell)(16, 16, num_layers=2)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            y, state = self.rnn(torch.tanh(self.front(x)))
            h = state[0] if isinstance(state, tuple) else state
            return self.head(y[-1]) + h[-1].sum(-1, keepdim=True), state

    torch.manual_seed(0)
    return Net().eval(), (torch.randn(6, 1, 12),)


def lstm():
    return _net("LSTM")


def gru():
    return _net("GRU")
