"""The task contract without any real model: a sixth task (a linear regression on random numbers),
defined only in this module and registered here, driven through the trainer, the checkpoint, the
predictor interface and the command line (train, its held-out report, evaluate, plot, ablate) and
the server. Nothing elsewhere knows it: the trainer, the CLI and the server ask only what
`attnseq.contracts.Task` names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import httpx
import pytest
import torch
from torch import nn

from attnseq import tasks
from attnseq.checkpoint import load_model_dir
from attnseq.cli import main
from attnseq.config import load_config
from attnseq.contracts import Ablation, Column, LossOutput, Prediction, Task, TaskData
from attnseq.errors import AttnseqError
from attnseq.schema import AT_LEAST_1
from attnseq.trainer import Trainer

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


@dataclass
class FakeData:
    """The data section of task fake: how many random rows each split holds."""

    rows: int = 256
    test_rows: int = 64
    ranges: ClassVar[dict] = {"rows": AT_LEAST_1}


@dataclass
class FakeModel:
    bias: bool = False  # y = x . w (+ b)


class Regression(nn.Module):
    def __init__(self, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1, bias=bias)

    def forward(self, batch: Rows) -> LossOutput:
        errors = self.linear(batch.x.float())[:, 0] - batch.y
        return LossOutput((errors**2).sum(), batch.units, logs={"abs": float(errors.detach().abs().sum())})


class NoAssets:
    def files(self) -> dict[str, bytes]:
        return {"fake_assets.json": b"{}\n"}

    def describe(self) -> str:
        return "no vocabulary"


class FakeTask(Task):
    name = "fake"
    metrics = {"exact_match": True, "loss": False, "error": False}
    default_metric = "exact_match"
    unit = "row"
    sections = {"data": FakeData, "model": FakeModel}

    def check(self, cfg, at) -> None:
        if cfg.data.test_rows > cfg.data.rows:
            raise AttnseqError(f"{at('data.test_rows')}: data.test_rows must not exceed data.rows")

    def describe_model(self, cfg) -> str:
        return "linear regression" + (" with a bias" if cfg.model.bias else "")

    def summary(self, r: dict) -> str:
        return f"error {r['error']:.4f}"

    def test_report(self, predictor, *, data=None, src=None, ref=None, outputs=None):
        test = Numbers(predictor.config.data.test_rows, seed=2)
        with torch.no_grad():
            error = float((predictor.model.linear(test.x)[:, 0] - test.y).abs().mean())
        return {"error": error, "n": len(test)}

    def plot(self, predictor, text, out):
        out.write_bytes(b"weights " + str(predictor.model.linear.weight.tolist()).encode())
        return predictor.predict([text])[0].output, out

    def ablation(self, cfg, source):
        return Ablation(held_out="the test rows", columns=[Column("error", "error", digits=4)],
                        score=lambda predictor: self.test_report(predictor))  # fmt: skip

    def ablation_variants(self, cfg):
        return [("plain", ["model.bias=false"]), ("bias", ["model.bias=true"])]

    def __init__(self) -> None:
        self.validations = 0

    def data(self, cfg, *, saved=None) -> TaskData:
        return TaskData(Numbers(cfg.data.rows, seed=0), Numbers(64, seed=1), NoAssets())

    def load_assets(self, cfg, directory):
        assert (directory / "fake_assets.json").read_text() == "{}\n"
        return NoAssets()

    def build_model(self, cfg, assets) -> nn.Module:
        return Regression(cfg.model.bias)

    def validate(self, model, data, cfg, *, device: str) -> dict[str, float]:
        self.validations += 1
        error = float((model.linear.weight.detach()[0].cpu() - TRUE_W).abs().max())
        return {"exact_match": 100.0 * (error < 0.05), "error": error}

    def predictor(self, model, cfg, assets, *, device: str = "cpu"):
        return Predict(model, cfg)


class Predict:
    search_options = ()

    def __init__(self, model, config) -> None:
        self.model, self.config = model, config

    def predict(self, inputs: list[str], **search) -> list[Prediction]:
        x = torch.tensor([[float(v) for v in text.split()] for text in inputs])
        with torch.no_grad():
            y = self.model.linear(x)[:, 0].tolist()
        return [Prediction(text, f"{v:.3f}", 0.0, text.split(), [f"{v:.3f}"], None) for text, v in zip(inputs, y)]

    def info(self) -> dict:
        return {"inputs": "three numbers"}

    def search_defaults(self) -> dict:
        return {}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """Task fake is known for the length of each test of this module only."""
    monkeypatch.setitem(tasks.TASKS, FakeTask.name, FakeTask)


SETTINGS = ["train.batch_size=32", "train.lr=0.05", "train.max_epochs=30", "train.patience=0",
            "train.valid_metric=loss", "train.precision=fp32", "train.log_every=4"]  # fmt: skip


def fake_config(*overrides: str):
    return load_config(None, ["task=fake", *SETTINGS, *overrides])


def test_the_trainer_drives_any_task_through_the_contract(tmp_path):
    task = FakeTask()
    result = Trainer(fake_config(), tmp_path / "run", task=task, progress_bar=False).fit()
    assert result.losses[-1] < 1e-3 < result.losses[0]  # it learned y = x . w
    assert task.validations == 30
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["event"] == "valid"]
    assert valid[-1]["error"] < 0.01 and valid[-1]["exact_match"] == 100.0 and valid[0]["error"] > valid[-1]["error"]
    assert all(r["improved"] == (r["best"] == r["loss"]) for r in valid)  # best/ follows the lower loss
    train = [r for r in records if r["event"] == "train"]  # LossOutput.logs per unit, as loss_<name>
    assert all(0 < r["loss_abs"] and r["loss_abs"] ** 2 <= r["loss"] * 1.0001 for r in train), train[:2]
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


def write_config(tmp_path, *lines: str):
    path = tmp_path / "fake.yaml"
    sets = "\n".join(f"  {s.split('.', 1)[1].replace('=', ': ')}" for s in SETTINGS)
    path.write_text("task: fake\ndata:\n  rows: 256\nmodel:\n  bias: false\ntrain:\n" + sets + "\n" + "\n".join(lines))
    return path


def test_the_config_reads_the_sections_and_checks_of_a_task_defined_elsewhere(tmp_path):
    cfg = load_config(write_config(tmp_path))
    assert isinstance(cfg.data, FakeData) and isinstance(cfg.model, FakeModel) and cfg.train.lr == 0.05
    with pytest.raises(AttnseqError, match="'data.rows' must be at least 1"):
        load_config(write_config(tmp_path), ["data.rows=0"])
    with pytest.raises(AttnseqError, match="data.test_rows must not exceed data.rows"):
        load_config(write_config(tmp_path), ["data.test_rows=300"])
    with pytest.raises(AttnseqError, match="'model.layers' is not a known key.*valid keys in 'model': bias"):
        load_config(write_config(tmp_path), ["model.layers=2"])
    with pytest.raises(AttnseqError, match="'train.valid_metric': 'bleu' is not allowed with task fake"):
        load_config(write_config(tmp_path), ["train.valid_metric=bleu"])


def test_a_task_defined_elsewhere_trains_reports_evaluates_plots_and_ablates_through_the_cli(tmp_path, capsys):
    config, run = write_config(tmp_path), tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--set", "train.max_epochs=10"]) == 0
    printed = capsys.readouterr().out
    assert "training linear regression, 3 parameters, 256 examples, no vocabulary" in printed
    assert "held-out: error 0." in printed  # the task's report after training, by its default lines
    report = json.loads((run / "test_report.json").read_text())
    assert report["n"] == 64 and report["error"] < 0.05

    assert main(["evaluate", "--model", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report
    assert main(["evaluate", "--model", str(run), "--beam-size", "3"]) == 2
    assert "--beam-size: not for a fake model; leave it out" in capsys.readouterr().err

    assert main(["plot", "--model", str(run), "1 0 0", "--out", str(tmp_path / "w.txt")]) == 0
    assert capsys.readouterr().out.startswith("2.0") and (tmp_path / "w.txt").read_bytes().startswith(b"weights")

    assert main(["ablate", str(config), "--out", str(tmp_path / "abl"), "--set", "train.max_epochs=3"]) == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "abl" / "ablation.json").read_text())}
    assert set(rows) == {"plain", "bias"} and rows["bias"]["params"] == 4 and rows["plain"]["params"] == 3
    assert "| plain | 3 |" in (tmp_path / "abl" / "ablation.md").read_text()


def test_a_task_defined_elsewhere_is_served(tmp_path):
    from attnseq.serve import Batching, Limits, create_app, load_models
    from tests.serving import live_server

    Trainer(fake_config(), tmp_path / "run", progress_bar=False).fit()
    models = load_models([f"toy={tmp_path / 'run'}"])
    with live_server(create_app(models, limits=Limits(), batching=Batching())) as url:
        listed = httpx.get(f"{url}/v1/models").json()["models"]
        assert [(m["name"], m["task"], m["inputs"]) for m in listed] == [("toy", "fake", "three numbers")]
        answer = httpx.post(f"{url}/v1/predict", json={"model": "toy", "inputs": ["1 0 0", "0 0 2"]}).json()
    assert [p["output"] for p in answer["predictions"]] == ["2.000", "1.000"]


def test_an_installed_package_registers_its_task_through_entry_points(monkeypatch):
    import importlib.metadata

    from attnseq.tasks import known_tasks

    monkeypatch.delitem(tasks.TASKS, FakeTask.name)
    monkeypatch.setattr(tasks, "_PLUGINS_LOADED", False)
    entry = importlib.metadata.EntryPoint("fake", f"{__name__}:FakeTask", "attnseq.tasks")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [entry] if group == "attnseq.tasks" else [])
    assert known_tasks()["fake"] is FakeTask and isinstance(load_config(None, ["task=fake"]).data, FakeData)
    wrong = importlib.metadata.EntryPoint("other", f"{__name__}:FakeTask", "attnseq.tasks")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [wrong])
    monkeypatch.setattr(tasks, "_PLUGINS_LOADED", False)
    with pytest.raises(TypeError, match="not a Task subclass named 'other'"):
        known_tasks()
