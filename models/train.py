"""Training (`hwsim train`): SGD + Nesterov, cosine schedule, optional quantizer and
bit-flip noise, resumable and deterministic for a seed."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import FORMAT, build_model, epochs_trained, read_checkpoint, save_atomic
from .data import load_dataset
from .device import TRAIN_PRECISIONS, cpu_state, forward_precision, resolve_device
from .errors import ConfigError
from .evaluate import accuracy, use_channels_last
from .networks import NETWORKS
from .quant import QUANTIZERS, canonical_params, post_step, quant_penalty
from .usercode import is_spec, model_entry, parse_spec


@dataclass
class TrainConfig:
    model: str = "small_cnn"
    data: str = "digits"
    data_root: str | None = None
    quantizer: str | None = None  # None = float
    bits: int = 4
    bfn_rate: float = 0.0
    quantizer_params: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    seed: int = 0
    init_from: str | None = None  # checkpoint to fine-tune from (e.g. a float baseline)
    layer_bits: dict | None = None  # {layer: bits} overriding `bits` (mixed precision)
    act_bfn_rate: float = 0.0  # bit-flip noise on 8-bit activations (models/activations.py)
    adv_flips: int = 0  # BFA in the loop: flips per step (models/adversarial.py); 0 = off
    adv_start_loss: float = 1.75
    adv_clip: float = 0.05

    def adversarial(self):
        """models.adversarial.AdversarialFlips of this recipe, or None."""
        if not self.adv_flips:
            return None
        from .adversarial import AdversarialFlips
        return AdversarialFlips(self.adv_flips, self.adv_start_loss, self.adv_clip)

    def recipe(self) -> dict:
        """The fields as a dict (checkpoint config.train); layer_bits only when set, so
        uniform-width recipes read as before mixed precision existed."""
        d = asdict(self)
        if not d["layer_bits"]:
            del d["layer_bits"]
        if not d["act_bfn_rate"]:  # likewise: recipes without activation noise read as before
            del d["act_bfn_rate"]
        if not d["adv_flips"]:  # and without adversarial training
            for k in ("adv_flips", "adv_start_loss", "adv_clip"):
                del d[k]
        # and quantizer options added later (e.g. wcat estimator: ste) when at their default
        d["quantizer_params"] = canonical_params(self.quantizer, d["quantizer_params"])
        return d

    def validate(self) -> None:
        if self.model not in NETWORKS and not is_spec(self.model):
            raise ConfigError(f"model {self.model!r}; valid: {', '.join(NETWORKS.names())}, "
                              "path/to/file.py:factory, torchvision:NAME, timm:NAME")
        if self.quantizer is not None and self.quantizer not in QUANTIZERS:
            raise ConfigError(f"quantizer {self.quantizer!r}; valid: float, "
                              f"{', '.join(QUANTIZERS.names())}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be >= 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr!r}: must be > 0")
        if not 0 <= self.bfn_rate <= 0.5:
            raise ConfigError(f"bfn_rate={self.bfn_rate!r}: must be in [0, 0.5]")
        if self.layer_bits and self.quantizer is None:
            raise ConfigError("layer_bits needs a quantizer (a float model stores no integers)")
        if self.bfn_rate > 0 and self.quantizer is None:
            raise ConfigError("bit-flip noise training needs a quantizer (stored integers)")
        if not 0 <= self.act_bfn_rate <= 0.5:
            raise ConfigError(f"act_bfn_rate={self.act_bfn_rate!r}: must be in [0, 0.5]")
        if self.act_bfn_rate > 0 and self.quantizer is None:
            raise ConfigError("activation bit-flip noise needs a quantizer (it acts at the "
                              "inputs of quantized layers)")
        if self.adv_flips:
            if self.quantizer is None:
                raise ConfigError("adversarial bit-flip training needs a quantizer (stored "
                                  "integers)")
            self.adversarial().validate()

    def model_config(self, num_classes: int, in_channels: int, input_shape=None) -> dict:
        """The checkpoint's config; a user model records its source and input_shape."""
        q = None
        if self.quantizer:
            q = {"name": self.quantizer, "bits": self.bits, "bfn_rate": self.bfn_rate,
                 "params": canonical_params(self.quantizer, self.quantizer_params)}
            if self.layer_bits:
                q["layer_bits"] = dict(self.layer_bits)
            if self.act_bfn_rate:
                q["act_bfn_rate"] = self.act_bfn_rate
        model = {"name": self.model, "num_classes": num_classes, "in_channels": in_channels}
        if is_spec(self.model):
            model = model_entry(self.model, num_classes, in_channels, input_shape)
        data = self.data
        if is_spec(data):  # found again from any working directory
            data = "{path}:{factory}".format(**parse_spec(data, "--data"))
        return {"model": model, "quantizer": q, "data": {"name": data, "root": self.data_root},
                "train": self.recipe()}


def _init_weights(model: nn.Module, path: str, config: dict) -> None:
    """Fine-tuning: copy network weights (not quantizer state) from another checkpoint,
    before the quantizer is attached so its ranges start from these weights."""
    src = read_checkpoint(path)
    if src["config"]["model"]["name"] != config["model"]["name"]:
        raise ConfigError(f"--init-from {path!r} holds a {src['config']['model']['name']}, "
                          f"not a {config['model']['name']}")
    # a baseline still being trained (its checkpoint is written every epoch) is not a baseline
    done, wanted = epochs_trained(src)
    if done < wanted:
        raise ConfigError(f"--init-from {path!r} is trained for {done} of its {wanted} epochs; "
                          f"finish it first (hwsim train ... --resume)")
    state = {k: v for k, v in src["model_state"].items() if ".quantizer." not in k}
    model.load_state_dict(state)


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          log=print, data=None, compile: bool = False, device: str = "cpu",
          precision: str = "fp32") -> dict:
    """Train and write the checkpoint `out` after every epoch. Returns the final checkpoint.

    device: 'cpu', 'cuda[:N]' or 'auto'; like compile, an execution choice.
    compile: run the training steps through torch.compile (an execution choice, not part of
    the recipe). Measured on 2 CPU cores, ResNet-20 float: 1.21x over channels-last eager
    (benchmarks/bench_train.py --compile); with bit-flip noise the stored integers change
    every step and force recompiles (0.4x), so that combination is refused.
    precision: 'fp32', or 'bf16' to run the forward pass under bfloat16 autocast (weights,
    optimizer, loss and every evaluation stay float32). Also an execution choice: on 2 CPU
    cores with AVX512-BF16, ResNet-20 steps 1.8x (float) and 1.5x (WCAT+BFN) faster
    (benchmarks/bench_train.py); each epoch's log row records it when not fp32."""
    cfg.validate()
    if precision not in TRAIN_PRECISIONS:
        raise ConfigError(f"precision {precision!r}: valid: {', '.join(TRAIN_PRECISIONS)}")
    if compile and (cfg.bfn_rate > 0 or cfg.act_bfn_rate > 0 or cfg.adv_flips):
        raise ConfigError("compile with bit-flip noise or adversarial training recompiles "
                          "every step (2.4x slower than eager, measured); train without "
                          "compile")
    adv = cfg.adversarial()
    dev = resolve_device(device)  # see models/device.py: same recipe, not the same bits
    out = Path(out)
    train_data, test_data = data or load_dataset(cfg.data, cfg.data_root)
    in_ch = train_data.images.shape[1]
    config = cfg.model_config(train_data.num_classes, in_ch, tuple(train_data.images.shape[1:]))

    torch.manual_seed(cfg.seed)
    float_cfg = dict(config, quantizer=None)
    model = build_model(float_cfg)
    if cfg.init_from:
        _init_weights(model, cfg.init_from, config)
    if config["quantizer"]:
        q = config["quantizer"]
        from .quant import quantize_model
        quantize_model(model, q["name"], q["bits"], q["bfn_rate"],
                       layer_bits=q.get("layer_bits"), **q["params"])
        if cfg.act_bfn_rate > 0:  # training-mode hooks; the checkpoint holds no trace of them
            from .activations import add_activation_bfn
            add_activation_bfn(model, cfg.act_bfn_rate)
    model.to(dev)

    qparams = [p for n, p in model.named_parameters() if ".quantizer." in n]
    others = [p for n, p in model.named_parameters() if ".quantizer." not in n]
    groups = [{"params": others, "weight_decay": cfg.weight_decay}]
    if qparams:  # ranges/steps have their own penalty (WCAT) or none (LSQ)
        groups.append({"params": qparams, "weight_decay": 0.0})
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    start, history, adv_on = 0, [], False

    if resume and out.exists():
        ck = read_checkpoint(out)
        if ck["config"]["train"] != config["train"]:
            raise ConfigError(f"--resume: {out} was trained with a different configuration; "
                              f"use another --out or drop --resume")
        model.load_state_dict(ck["model_state"])  # copies into the tensors on `dev`
        start, history = ck["epoch"], ck["history"]
        adv_on = bool(ck.get("adv_on", False))
        if "optimizer_state" in ck and start < cfg.epochs:
            opt.load_state_dict(ck["optimizer_state"])
            sched.load_state_dict(ck["scheduler_state"])
            torch.set_rng_state(ck["rng_state"])
        if start >= cfg.epochs:
            log(f"{out}: already trained for {start} epochs; nothing to do")
            return ck

    ckpt = None
    step_model = torch.compile(model) if compile else model  # shares the parameters
    for epoch in range(start, cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        t0, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        n_batches = -(-len(train_data) // cfg.batch_size)
        bar = tqdm(train_data.batches(cfg.batch_size, shuffle=True, train=True, generator=gen),
                   total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not progress, file=sys.stderr)
        for x, y in bar:
            x = use_channels_last(model, x.to(dev, non_blocking=True))
            y = y.to(dev, non_blocking=True)
            with forward_precision(dev, precision):
                logits = step_model(x)
            loss = F.cross_entropy(logits.float(), y)
            total = loss + quant_penalty(model)
            opt.zero_grad(set_to_none=True)
            total.backward()
            if adv is not None:
                # BFA in the loop from the first step the running loss is below the start
                adv_on = adv_on or (loss_sum + float(loss.detach()) * len(y)) / (
                    seen + len(y)) < adv.start_loss
                if adv_on:
                    from .adversarial import add_faulty_gradients
                    add_faulty_gradients(model, step_model, x, y, adv)
            opt.step()
            post_step(model)
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        sched.step()
        test_acc = accuracy(model, test_data)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / seen,
               "train_acc": correct / seen, "test_acc": test_acc, "seconds": time.time() - t0}
        if precision != "fp32":
            row["precision"] = precision
        if adv is not None:  # BFA in the loop was on by the end of this epoch
            row["adversarial"] = adv_on
        history.append(row)
        log(json.dumps(row))
        done = epoch + 1 == cfg.epochs
        ckpt = {"format": FORMAT, "config": config, "model_state": cpu_state(model),
                "epoch": epoch + 1, "history": history}
        if adv is not None:
            ckpt["adv_on"] = adv_on
        if not done:  # resume state; dropped at the end to keep checkpoints ~1 MB
            ckpt.update(optimizer_state=opt.state_dict(), scheduler_state=sched.state_dict(),
                        rng_state=torch.get_rng_state())
        save_atomic(ckpt, out)
    return ckpt
