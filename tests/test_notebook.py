"""notebooks/inference.ipynb runs end to end (nbclient) on a tiny checkpoint trained here."""

from __future__ import annotations

import os
import re

import pytest

from _inference_helpers import read_events, trained_gen_run

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks", "inference.ipynb")


def test_inference_notebook_executes(tmp_path_factory, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    run_dir = trained_gen_run(tmp_path_factory)  # trained on 4 devices; the kernel has 1
    monkeypatch.setenv("SSM_RUN_DIR", run_dir)
    monkeypatch.setenv("JAX_ENABLE_X64", "1")  # the run was trained in float64: compare exactly
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()  # fmt: skip
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "devices: [CpuDevice(id=0)]" in text  # one device in the kernel, four when the run was trained
    # the notebook's test NLL is the one the training loop recorded for the best (= final) checkpoint
    nll = float(re.search(r"test NLL: ([0-9.e+-]+) nats/pixel", text).group(1))
    final = max(e["step"] for e in read_events(run_dir))
    recorded = next(e for e in read_events(run_dir) if e["split"] == "test" and e["step"] == final)["loss"]
    assert nll == pytest.approx(recorded, rel=1e-10)
    assert "sampled (4, 784)" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the kernel plot and the samples
