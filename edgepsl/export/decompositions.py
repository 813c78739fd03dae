"""Decompositions that turn every backward op into plain aten ops with a correct standard-ONNX translation.

Without them the stock exporter fails (no ONNX function for convolution_backward) or is silently wrong
(training BatchNorm exported as inference BatchNorm; the cross-entropy gradient scaled by the batch size).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch._decomp import core_aten_decompositions
from torch._decomp import decomposition_table as torch_decompositions
from torch._decomp.decompositions import native_batch_norm_helper as torch_batch_norm

from edgepsl.export.errors import ExportError

aten = torch.ops.aten
Tensor = torch.Tensor


# Output maps of at most this many pixels are convolved as one MatMul over the whole batch: onnxruntime's
# per-image convolution is slow there (measured 2.4x on 2x2 maps, 512 channels, batch 32, one thread).
SMALL_MAP_PIXELS = 4

# Output tile of the Winograd F(m x m, 3x3) used for 3x3 stride-1 padding-1 convolutions (forward, input and
# weight gradients); 0 keeps the Conv formulation. 2, not 4: F(4x4,3x3) is faster but reached 1.12e-5 relative
# L2 on a VGG-11 weight gradient. See docs/segments.md and tools/bench_winograd.py.
WINOGRAD_TILE = 2

# Lavin & Gray's transforms (B^T, G, A^T): y = A^T [(G g G^T) * (B^T d B)] A is the 3x3 correlation of tile d.
WINOGRAD_TRANSFORMS: dict[int, tuple[list[list[float]], list[list[float]], list[list[float]]]] = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def winograd_tile_for(tile: int, inp: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int],
                      dilation: Sequence[int], groups: int) -> int:
    """The Winograd output tile for this convolution (tile, else 2 when tile does not divide the map), 0 if none."""
    if not tile or groups != 1 or tuple(weight.shape[2:]) != (3, 3) or any(s != 1 for s in stride) \
            or any(p != 1 for p in padding) or any(d != 1 for d in dilation):
        return 0
    h, w = inp.shape[2:]
    if h * w <= SMALL_MAP_PIXELS:
        return 0
    return next((m for m in (tile, 2) if h % m == 0 and w % m == 0), 0)


def winograd_weight(weight: Tensor, tile: int, flip: bool) -> Tensor:
    """(G x G) g of every 3x3 kernel as [alpha^2, Cout, Cin]: one MatMul with the weight transposed (onnxruntime
    fuses it); flip=True transforms the 180-degree rotated kernels (the reversal folded into the constant)."""
    cout, cin = weight.shape[:2]
    gg = _winograd_matrix(tile, 1, weight)
    if flip:
        gg = gg.flip(1)
    return (gg @ weight.reshape(cout * cin, 9).t()).reshape(-1, cout, cin)


def _winograd_matrix(tile: int, which: int, like: Tensor) -> Tensor:
    """kron(T, T) of transform `which` (0: B^T, 1: G, 2: A^T) in like's dtype and device."""
    t = torch.tensor(WINOGRAD_TRANSFORMS[tile][which], dtype=like.dtype, device=like.device)
    return torch.kron(t, t)


def winograd_input(inp: Tensor, tile: int) -> Tensor:
    """(B^T x B^T) d of every input tile of inp [N, Cin, H, W] padded by 1, as [alpha^2, tiles, Cin]: channel-last,
    so each of the alpha^2 strided tap Slices moves whole channel vectors."""
    alpha = tile + 2
    th, tw = inp.shape[2] // tile, inp.shape[3] // tile
    x = aten.constant_pad_nd(inp.permute(0, 2, 3, 1), [0, 0, 1, 1, 1, 1], 0.0)
    taps = [x[:, a: a + tile * (th - 1) + 1: tile, b: b + tile * (tw - 1) + 1: tile, :]
            for a in range(alpha) for b in range(alpha)]
    d = torch.stack(taps, 0).reshape(alpha * alpha, -1)
    return (_winograd_matrix(tile, 0, inp) @ d).reshape(alpha * alpha, -1, inp.shape[1])


def winograd_conv3x3(inp: Tensor, u: Tensor, tile: int) -> Tensor:
    """3x3 stride-1 padding-1 correlation of inp [N, Cin, H, W] by Winograd F(tile x tile, 3x3); u is the
    transformed weight [alpha^2, Cin, Cout]: the alpha^2 channel-mixing products as one batched MatMul V u,
    Y = (A^T x A^T) M, rearranged with whole-channel runs to NHWC, then NCHW."""
    n, _, h, w = inp.shape
    cout = u.shape[2]
    m = (winograd_input(inp, tile) @ u).reshape(u.shape[0], -1)
    y = (_winograd_matrix(tile, 2, inp) @ m).reshape(tile, tile, n, h // tile, w // tile, cout)
    return y.permute(2, 3, 0, 4, 1, 5).reshape(n, h, w, cout).permute(0, 3, 1, 2)


def winograd_weight_grad(grad_out: Tensor, inp: Tensor, tile: int) -> Tensor:
    """Weight gradient [Cout, Cin, 3, 3] of the Winograd convolution (its transpose): dM = (A^T x A^T)^T dY per
    tile, dU = dM^T V as one batched MatMul over the tiles, dW = dU^T (G x G)."""
    n, cout, h, w = grad_out.shape
    cin, alpha2 = inp.shape[1], (tile + 2) ** 2
    dy = grad_out.permute(0, 2, 3, 1).reshape(n, h // tile, tile, w // tile, tile, cout)
    dy = dy.permute(2, 4, 0, 1, 3, 5).reshape(tile * tile, -1)
    dm = (_winograd_matrix(tile, 2, grad_out).t() @ dy).reshape(alpha2, -1, cout)
    du = dm.transpose(1, 2) @ winograd_input(inp, tile)
    return (du.reshape(alpha2, -1).t() @ _winograd_matrix(tile, 1, inp)).reshape(cout, cin, 3, 3)


def convolution(inp: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int], padding: Sequence[int],
                dilation: Sequence[int], transposed: bool, output_padding: Sequence[int],
                groups: int, winograd_tile: int = WINOGRAD_TILE) -> object:
    """3x3 stride-1 convolutions by Winograd (winograd_tile > 0); small-map 2-D convolutions as taps Concat + one
    MatMul in channel-major layout; others stay Conv.

    The small-map columns are ordered (input channel, tap), the order of the weight's own layout, so the weight
    enters the MatMul as a plain reshape (no per-step transpose of the parameters).
    """
    if transposed or groups != 1 or inp.dim() != 4:
        return NotImplemented
    stride, padding, dilation = (list(v) * 2 if len(v) == 1 else list(v) for v in (stride, padding, dilation))
    tile = winograd_tile_for(winograd_tile, inp, weight, stride, padding, dilation, groups)
    if tile:
        out = winograd_conv3x3(inp, winograd_weight(weight, tile, False).transpose(1, 2), tile)
        return out if bias is None else out + bias.reshape(1, -1, 1, 1)
    cout, cin, kh, kw = weight.shape
    h, w = inp.shape[2:]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho * wo > SMALL_MAP_PIXELS:
        return NotImplemented
    x = inp.transpose(0, 1)
    if any(padding):
        x = aten.constant_pad_nd(x, [padding[1], padding[1], padding[0], padding[0]], 0.0)
    taps = [x[:, :, i * dilation[0]: i * dilation[0] + (ho - 1) * stride[0] + 1: stride[0],
              j * dilation[1]: j * dilation[1] + (wo - 1) * stride[1] + 1: stride[1]]
            for i in range(kh) for j in range(kw)]
    cols = torch.stack(taps, 1).reshape(cin * kh * kw, -1)
    out = weight.reshape(cout, cin * kh * kw) @ cols
    out = out.reshape(cout, -1, ho, wo).transpose(0, 1)
    return out if bias is None else out + bias.reshape(1, cout, 1, 1)


def _conv_input_grad(grad_out: Tensor, inp: Tensor, weight: Tensor, stride: Sequence[int],
                     padding: Sequence[int], dilation: Sequence[int], groups: int, winograd_tile: int) -> Tensor:
    """Input gradient: Winograd on the flipped kernels for 3x3 stride-1 padding-1 (winograd_tile > 0), a Conv with
    flipped, transposed weights at other stride-1 convolutions, else a ConvTranspose."""
    tile = winograd_tile_for(winograd_tile, grad_out, weight, stride, padding, dilation, groups)
    if tile:
        return winograd_conv3x3(grad_out, winograd_weight(weight, tile, True), tile)
    k = weight.shape[2:]
    full_pad = [d * (kk - 1) - p for kk, p, d in zip(k, padding, dilation)]
    if all(s == 1 for s in stride) and all(p >= 0 for p in full_pad):
        cout, cin_g = weight.shape[:2]
        if groups == 1:
            # The kernel flip as a MatMul with the reversed identity (exact): onnxruntime reverses a 9-element
            # axis element by element, slower than the MatMul plus the channel transpose together.
            taps = k[0] * k[1]
            w = weight.reshape(cout * cin_g, taps)
            if taps > 1:
                w = w @ torch.eye(taps, dtype=weight.dtype, device=weight.device).flip(0)
            w = w.reshape(cout, cin_g, *k).transpose(0, 1)
        else:
            w = weight.flip(2, 3).reshape(groups, cout // groups, cin_g, *k).transpose(1, 2)
        w = w.reshape(groups * cin_g, cout // groups, *k)
        return aten.convolution(grad_out, w, None, [1, 1], full_pad, list(dilation), False, [0, 0], groups)
    out_pad = [inp.shape[2 + i] - ((grad_out.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                   + dilation[i] * (k[i] - 1) + 1) for i in range(2)]
    return aten.convolution(grad_out, weight, None, list(stride), list(padding), list(dilation), True,
                            out_pad, groups)


def _conv_weight_grad(grad_out: Tensor, inp: Tensor, weight: Tensor, stride: Sequence[int],
                      padding: Sequence[int], dilation: Sequence[int], groups: int, winograd_tile: int) -> Tensor:
    """Weight gradient: Winograd for 3x3 stride-1 padding-1 (winograd_tile > 0), else one MatMul per kernel tap on
    channel-major views (groups == 1); grouped convolutions fold the groups into the batch axis and use a
    convolution.

    Per tap (i, j): grad_w[:, :, i, j] = grad_out^T (Cout, N*Ho*Wo) @ x_tap (Cin, N*Ho*Wo)^T, with x transposed to
    (Cin, N, H, W) once and each tap a strided Slice of it: no im2col Concat and no transpose of the taps.
    """
    tile = winograd_tile_for(winograd_tile, inp, weight, stride, padding, dilation, groups)
    if tile:
        return winograd_weight_grad(grad_out, inp, tile)
    cout, cin_g, kh, kw = weight.shape
    n = inp.shape[0]
    ho, wo = grad_out.shape[2:]
    if groups == 1:
        x = inp.transpose(0, 1)
        if any(padding):
            x = aten.constant_pad_nd(x, [padding[1], padding[1], padding[0], padding[0]], 0.0)
        a = grad_out.transpose(0, 1).reshape(cout, -1)
        taps = [a @ x[:, :, i * dilation[0]: i * dilation[0] + (ho - 1) * stride[0] + 1: stride[0],
                      j * dilation[1]: j * dilation[1] + (wo - 1) * stride[1] + 1: stride[1]].reshape(cin_g, -1).t()
                for i in range(kh) for j in range(kw)]
        return taps[0].reshape(cout, cin_g, 1, 1) if len(taps) == 1 else torch.stack(taps, 2).reshape(cout, cin_g, kh, kw)
    x = inp.reshape(n, groups, cin_g, *inp.shape[2:]).permute(2, 1, 0, 3, 4).reshape(cin_g, groups * n, *inp.shape[2:])
    go = grad_out.reshape(n, groups, cout // groups, ho, wo).permute(1, 2, 0, 3, 4).reshape(cout, n, ho, wo)
    gw = aten.convolution(x, go, None, list(dilation), list(padding), list(stride), False, [0, 0], groups)
    return gw.transpose(0, 1)[:, :, :kh, :kw]


def convolution_backward(grad_out: Tensor, inp: Tensor, weight: Tensor, bias_sizes: Sequence[int] | None,
                         stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], transposed: bool,
                         output_padding: Sequence[int], groups: int,
                         output_mask: Sequence[bool], winograd_tile: int = WINOGRAD_TILE,
                         ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """aten.convolution_backward for 2-D, non-transposed convolutions."""
    if transposed or inp.dim() != 4:
        raise ExportError("only 2-D, non-transposed convolutions can be exported for training")
    stride, padding, dilation = (list(v) * 2 if len(v) == 1 else list(v) for v in (stride, padding, dilation))
    grad_in = (_conv_input_grad(grad_out, inp, weight, stride, padding, dilation, groups, winograd_tile)
               if output_mask[0] else None)
    grad_w = (_conv_weight_grad(grad_out, inp, weight, stride, padding, dilation, groups, winograd_tile)
              if output_mask[1] else None)
    grad_b = grad_out.sum([0, 2, 3]) if output_mask[2] else None
    return grad_in, grad_w, grad_b


def max_pool2d_backward(grad_out: Tensor, inp: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                        padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool, indices: Tensor) -> Tensor:
    """aten.max_pool2d_with_indices_backward as a scatter-add on per-plane flattened indices."""
    n, c, h, w = inp.shape
    flat = grad_out.new_zeros(n, c, h * w)
    return flat.scatter_add(2, indices.flatten(2), grad_out.flatten(2)).view(n, c, h, w)


def adaptive_avg_pool2d(inp: Tensor, output_size: Sequence[int]) -> Tensor:
    """Adaptive average pooling to 1x1 as a mean, else as avg_pool2d when the size divides evenly."""
    oh, ow = output_size
    h, w = inp.shape[-2:]
    if (oh, ow) == (1, 1):
        return inp.mean([-2, -1], keepdim=True)
    if h % oh or w % ow:
        raise ExportError(f"adaptive average pooling from {h}x{w} to {oh}x{ow} does not divide evenly")
    return aten.avg_pool2d(inp, [h // oh, w // ow], [h // oh, w // ow])


def adaptive_avg_pool2d_backward(grad_out: Tensor, inp: Tensor) -> Tensor:
    """Gradient of adaptive_avg_pool2d for evenly dividing sizes: spread each value over its window."""
    h, w = inp.shape[-2:]
    oh, ow = grad_out.shape[-2:]
    kh, kw = h // oh, w // ow
    g = grad_out / (kh * kw)
    if (oh, ow) == (1, 1):
        return g.expand(*inp.shape)
    return g.repeat_interleave(kh, -2).repeat_interleave(kw, -1)


def _channel_shape(inp: Tensor) -> list[int]:
    """[1, C, 1, ...]: a per-channel vector broadcast against an (N, C, ...) tensor."""
    return [1, inp.shape[1]] + [1] * (inp.dim() - 2)


def _batch_norm(inp: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor | None,
                running_var: Tensor | None, training: bool, momentum: float, eps: float,
                functional: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Training BatchNorm that centres the input once and scales it once (6 full passes where torch's takes 9).

    The backward below recomputes the centred input with the same two ops from the same tensors, so the
    exporter's common-subexpression elimination merges them and the backward reads the forward's centred input
    (saved instead of the raw input: no extra memory). Running statistics follow torch (unbiased variance).
    Inference mode is torch's own decomposition.
    """
    if not training:
        return torch_batch_norm(inp, weight, bias, running_mean, running_var, training, momentum, eps, functional)
    dims, shape = [0, *range(2, inp.dim())], _channel_shape(inp)
    mean = inp.mean(dims)
    centred = inp - mean.reshape(shape)
    var = (centred * centred).mean(dims)
    rstd = torch.rsqrt(var + eps)
    scale = rstd if weight is None else rstd * weight.flatten()
    out = centred * scale.reshape(shape)
    if bias is not None:
        out = out + bias.flatten().reshape(shape)
    new_mean, new_var = running_mean, running_var
    if running_mean is not None:
        new_mean = momentum * mean + (1 - momentum) * running_mean
        if not functional:
            running_mean.copy_(new_mean)
    if running_var is not None:
        n = inp.numel() / inp.shape[1]
        new_var = momentum * (var * (n / (n - 1))) + (1 - momentum) * running_var
        if not functional:
            running_var.copy_(new_var)
    return out, mean, rstd, new_mean, new_var


def native_batch_norm(inp: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor | None,
                      running_var: Tensor | None, training: bool, momentum: float,
                      eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """aten.native_batch_norm and aten._native_batch_norm_legit: running statistics updated in place."""
    return _batch_norm(inp, weight, bias, running_mean, running_var, training, momentum, eps, False)[:3]


def native_batch_norm_no_stats(inp: Tensor, weight: Tensor | None, bias: Tensor | None, training: bool,
                               momentum: float, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """aten._native_batch_norm_legit.no_stats (no running statistics)."""
    return _batch_norm(inp, weight, bias, None, None, training, momentum, eps, False)[:3]


def native_batch_norm_functional(inp: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor,
                                 running_var: Tensor, training: bool, momentum: float,
                                 eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """aten._native_batch_norm_legit_functional: new running statistics returned."""
    return _batch_norm(inp, weight, bias, running_mean, running_var, training, momentum, eps, True)


def native_batch_norm_backward(grad_out: Tensor, inp: Tensor, weight: Tensor | None, running_mean: Tensor | None,
                               running_var: Tensor | None, save_mean: Tensor | None, save_invstd: Tensor | None,
                               train: bool, eps: float, output_mask: Sequence[bool],
                               ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Training BatchNorm backward on the forward's centred input (see _batch_norm); eval mode is torch's."""
    if not train or save_mean is None or save_invstd is None:
        return torch_decompositions[aten.native_batch_norm_backward.default](
            grad_out, inp, weight, running_mean, running_var, save_mean, save_invstd, train, eps, output_mask)
    dims, shape = [0, *range(2, inp.dim())], _channel_shape(inp)
    centred = inp - save_mean.reshape(shape)
    n = inp.numel() / inp.shape[1]
    grad_sum = grad_out.sum(dims)
    dot = (grad_out * centred).sum(dims)
    scale = save_invstd if weight is None else save_invstd * weight.flatten()
    grad_in = None
    if output_mask[0]:
        grad_in = (grad_out - (grad_sum / n).reshape(shape)
                   - centred * (dot * (save_invstd * save_invstd / n)).reshape(shape)) * scale.reshape(shape)
    grad_w = dot * save_invstd if output_mask[1] else None
    grad_b = grad_sum if output_mask[2] else None
    return grad_in, grad_w, grad_b


# BatchNorm forward ops: without these entries torchlib exports training BatchNorm as inference BatchNorm.
_BATCH_NORM_OPS: dict[object, Callable[..., object]] = {
    aten.native_batch_norm.default: native_batch_norm,
    aten._native_batch_norm_legit.default: native_batch_norm,
    aten._native_batch_norm_legit.no_stats: native_batch_norm_no_stats,
    aten._native_batch_norm_legit_functional.default: native_batch_norm_functional,
    aten._native_batch_norm_legit_no_training.default:
        torch_decompositions[aten._native_batch_norm_legit_no_training.default],
}


def decomposition_table(winograd_tile: int = WINOGRAD_TILE) -> dict[object, Callable[..., object]]:
    """core aten decompositions plus ours; always used, for training and eval graphs alike. winograd_tile: output
    tile of the Winograd 3x3 convolutions (2 or 4), 0 for none."""
    if winograd_tile not in (0, *WINOGRAD_TRANSFORMS):
        raise ExportError(f"winograd_tile must be 0 or one of {sorted(WINOGRAD_TRANSFORMS)}, got {winograd_tile}")
    table: dict[object, Callable[..., object]] = dict(core_aten_decompositions())
    table[aten.convolution.default] = functools.partial(convolution, winograd_tile=winograd_tile)
    table[aten.convolution_backward.default] = functools.partial(convolution_backward, winograd_tile=winograd_tile)
    table[aten.max_pool2d_with_indices_backward.default] = max_pool2d_backward
    table[aten._adaptive_avg_pool2d.default] = adaptive_avg_pool2d
    table[aten._adaptive_avg_pool2d_backward.default] = adaptive_avg_pool2d_backward
    table.update(_BATCH_NORM_OPS)
    table[aten.native_batch_norm_backward.default] = native_batch_norm_backward
    return table
