"""The strided 1x1 projection equals torch's stride-2 1x1 conv, and trains at odd batch sizes without the
oneDNN channels-last crash (oneDNN #6035: nhwc backward-weights with fewer than 16 input channels)."""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from anynet_search.models.blocks import Shortcut


@pytest.mark.parametrize("w_in,w_out,stride,size,batch", [(8, 8, 2, 16, 49), (3, 16, 2, 15, 33),
                                                          (24, 40, 2, 9, 63), (8, 16, 1, 8, 5)])
def test_projection_forward_and_gradients_equal_plain_strided_conv(w_in, w_out, stride, size, batch):
    torch.manual_seed(0)
    ours = Shortcut(w_in, w_out, stride).double()
    ref = nn.Conv2d(w_in, w_out, 1, stride=stride, bias=False).double()
    ref.weight.data.copy_(ours[0].weight.data)
    x = torch.randn(batch, w_in, size, size, dtype=torch.float64)
    x_ours = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    x_ref = x.clone().requires_grad_(True)  # plain NCHW reference
    conv_ours = ours.project(x_ours)
    out_ref = ref(x_ref)
    assert conv_ours.shape == out_ref.shape
    torch.testing.assert_close(conv_ours, out_ref)
    g = torch.randn_like(out_ref)
    conv_ours.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)  # input gradient
    torch.testing.assert_close(ours[0].weight.grad, ref.weight.grad)  # weight gradient
    # the whole module (conv + BN) keeps its parameter names and shapes
    assert [n for n, _ in ours.named_parameters()] == ["0.weight", "1.weight", "1.bias"]
    assert ours[0].weight.shape == (w_out, w_in, 1, 1)
    # the oneDNN kernel at fault is only avoided where it fails: fewer than 16 input channels
    assert (ours.slice, ours[0].stride) == ((stride, (1, 1)) if w_in < 16 else (1, (stride, stride)))


def test_odd_batches_train_in_channels_last_on_two_threads():
    # a subprocess: the crash this guards against is heap corruption that kills the interpreter
    code = textwrap.dedent("""
        import torch
        from anynet_search.models.config import AnyNetConfig
        from anynet_search.models.model import build_model
        torch.set_num_threads(2)
        torch.manual_seed(0)
        cfg = AnyNetConfig(depths=(1, 1), widths=(8, 16), bottleneck_ratios=(1, 1), group_widths=(8, 8),
                           strides=(2, 2), stem_type="cifar", stem_width=8, num_classes=10)
        model = build_model(cfg).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for batch in (33, 49, 63):
            for _ in range(30):
                x = torch.randn(batch, 3, 16, 16).contiguous(memory_format=torch.channels_last)
                loss = model(x).logsumexp(1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                assert torch.isfinite(loss)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
