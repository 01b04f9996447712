"""The task contract without any real model: a fake task (a linear regression on random numbers)
driven through the trainer, the checkpoint and the predictor interface. The trainer must need
nothing from it but what `attnseq.contracts.Task` names."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn

from attnseq.checkpoint import load_model_dir
from attnseq.config import load_config
from attnseq.contracts import LossOutput, Prediction, Task, TaskData
from attnseq.train import Trainer

TRUE_W = torch.tensor([2.0, -1.0, 0.5])


@dataclass
class Rows:
    x: torch.Tensor
    y: torch.Tensor

    @property
    def units(self) -> int:
        return len(self.y)

    def to(self, device):
        return Rows(self.x.to(device), self.y.to(device))


class Numbers:
    skipped = 0

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, generator=gen)
        self.y = self.x @ TRUE_W

    def __len__(self) -> int:
        return len(self.y)

    def batch_indices(self, batch_size: int, *, seed: int | None = None) -> list[list[int]]:
        order = list(range(len(self)))
        if seed is not None:
            order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def collate(self, index: list[int]) -> Rows:
        return Rows(self.x[index], self.y[index])


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1, bias=False)

    def forward(self, batch: Rows) -> LossOutput:
        return LossOutput(((self.linear(batch.x.float())[:, 0] - batch.y) ** 2).sum(), batch.units)


class NoAssets:
    def files(self) -> dict[str, bytes]:
        return {"fake_assets.json": b"{}\n"}

    def describe(self) -> str:
        return "no vocabulary"


class FakeTask(Task):
    name = "fake"
    metrics = {"exact_match": True, "loss": False, "error": False}  # exact_match: a metric name the config accepts
    default_metric = "exact_match"
    unit = "row"

    def __init__(self) -> None:
        self.validations = 0

    def data(self, cfg, *, saved=None) -> TaskData:
        return TaskData(Numbers(256, seed=0), Numbers(64, seed=1), NoAssets())

    def load_assets(self, cfg, directory):
        assert (directory / "fake_assets.json").read_text() == "{}\n"
        return NoAssets()

    def build_model(self, cfg, assets) -> nn.Module:
        return Regression()

    def validate(self, model, data, cfg, *, device: str) -> dict[str, float]:
        self.validations += 1
        error = float((model.linear.weight.detach()[0].cpu() - TRUE_W).abs().max())
        return {"exact_match": 100.0 * (error < 0.05), "error": error}

    def predictor(self, model, cfg, assets, *, device: str = "cpu"):
        class Predict:
            def predict(self, inputs: list[str], **search) -> list[Prediction]:
                x = torch.tensor([[float(v) for v in text.split()] for text in inputs])
                y = model.linear(x)[:, 0].tolist()
                return [
                    Prediction(text, f"{v:.3f}", 0.0, text.split(), [f"{v:.3f}"], None) for text, v in zip(inputs, y)
                ]

        return Predict()


def fake_config(*overrides: str):
    return load_config(None, ["train.batch_size=32", "train.lr=0.05", "train.max_epochs=30", "train.patience=0",
                              "train.valid_metric=loss", "train.precision=fp32", "train.log_every=4",
                              *overrides])  # fmt: skip


def test_the_trainer_drives_any_task_through_the_contract(tmp_path):
    task = FakeTask()
    result = Trainer(fake_config(), tmp_path / "run", task=task, progress_bar=False).fit()
    assert result.losses[-1] < 1e-3 < result.losses[0]  # it learned y = x . w
    assert task.validations == 30
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["event"] == "valid"]
    assert valid[-1]["error"] < 0.01 and valid[-1]["exact_match"] == 100.0 and valid[0]["error"] > valid[-1]["error"]
    assert all(r["improved"] == (r["best"] == r["loss"]) for r in valid)  # best/ follows the lower loss
    model, cfg, _ = load_model_dir(tmp_path / "run" / "best", task=task)
    assert torch.allclose(model.linear.weight[0], TRUE_W, atol=0.01)
    assert (tmp_path / "run" / "best" / "fake_assets.json").is_file()
    out = task.predictor(model, cfg, None).predict(["1 0 0", "0 0 2"])
    assert [p.output for p in out] == ["2.000", "1.000"]


def test_resume_of_any_task_equals_an_uninterrupted_run(tmp_path):
    whole = Trainer(fake_config("train.max_epochs=4"), tmp_path / "whole", task=FakeTask(), progress_bar=False).fit()
    Trainer(fake_config("train.max_epochs=4", "train.max_steps=13"), tmp_path / "cut", task=FakeTask(),
            progress_bar=False).fit()  # fmt: skip
    rest = Trainer(fake_config("train.max_epochs=4"), tmp_path / "cut", task=FakeTask(), resume=True,
                   progress_bar=False).fit()  # fmt: skip
    assert rest.losses == whole.losses[13:]
