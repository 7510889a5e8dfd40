"""Our flow model reproduces the authors' models (golden fixtures, see tests/fixtures/README.md)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from engine.errors import ModelUnavailableError
from engine.perceptual.convert import convert_official_flow_state, flow_config_from_official, official_flow_from_state
from engine.perceptual.flow_model import FlowModel

FIX = Path(__file__).parent / "fixtures"
ATOL = 1e-5


@pytest.fixture(scope="module")
def cfm():
    return torch.load(FIX / "official_cfm_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def deep():
    return torch.load(FIX / "official_cfm_tiny_deep.pt", weights_only=True)


def cases(cfm):
    return {"implicit": cfm, "concat_explicit": cfm["case_concat"]}


@pytest.mark.parametrize("name", ["implicit", "concat_explicit"])
def test_vector_field(cfm, name):
    case = cases(cfm)[name]
    model = official_flow_from_state(case["config"], case["state_dict"])
    f = case["forward"]
    out = model.estimator(f["x"], f["times"], f["context"], f["semantic_emb"])
    torch.testing.assert_close(out, f["output"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["implicit", "concat_explicit"])
def test_midpoint_trajectory(cfm, name):
    case = cases(cfm)[name]
    model = official_flow_from_state(case["config"], case["state_dict"])
    o = case["ode"]
    traj = model.trajectory(o["y0"], o["full_context"], o["full_semantic_emb"], o["t"])
    torch.testing.assert_close(traj, o["trajectory"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["implicit", "concat_explicit"])
def test_generate_matches_official(cfm, name):
    """Our generate() (prompt + target layout, prior, 16 midpoint steps) gives the official output."""
    case = cases(cfm)[name]
    model = official_flow_from_state(case["config"], case["state_dict"])
    o = case["ode"]
    prior = o["full_semantic_emb"] if model.cfg.chain == "implicit" else torch.zeros_like(o["y0"])
    noise = list(o["y0"] - prior)
    out = model.generate(list(o["semantic_emb"]), list(o["context"]), list(o["context_semantic_emb"]), steps=16, noise=noise)
    out = torch.stack(out)
    if model.cfg.chain == "explicit":  # the official generate returns zp; ours returns zs + zp
        out = out - o["semantic_emb"]
    torch.testing.assert_close(out, o["output"], atol=ATOL, rtol=0)


def test_deep_unet_and_mask(deep):
    model = official_flow_from_state(deep["config"], deep["state_dict"])
    assert model.cfg.backbone.num_skips() == 2
    f = deep["forward"]
    torch.testing.assert_close(model.estimator(f["x"], f["times"], f["context"]), f["output"], atol=ATOL, rtol=0)
    m = deep["forward_masked"]
    out = model.estimator(m["x"], m["times"], m["context"], mask=m["mask"])
    torch.testing.assert_close(out[m["mask"]], m["output"][m["mask"]], atol=ATOL, rtol=0)


def test_official_folder_loads(cfm, tmp_path):
    (tmp_path / "model_config.yml").write_text(yaml.safe_dump({"model_args": dict(cfm["config"])}))
    torch.save(cfm["state_dict"], tmp_path / "ConditionalFlowMatcher_best_dev.pt")
    model = FlowModel.from_pretrained(tmp_path, codec="snake")
    f = cfm["forward"]
    torch.testing.assert_close(model.estimator(f["x"], f["times"], f["context"]), f["output"], atol=ATOL, rtol=0)
    with pytest.raises(Exception, match="trained on the 'snake' codec"):
        FlowModel.from_pretrained(tmp_path, codec="hubert_avg")


def test_full_size_manifest_converts():
    manifest = json.loads((FIX / "manifests.json").read_text())["official_cfm_spt_snake"]
    cfg = flow_config_from_official(manifest["config"])
    with torch.device("meta"):
        model = FlowModel(cfg)
        state = {k: torch.empty(shape) for k, shape in manifest["state_dict"]}
    converted = convert_official_flow_state(state, cfg.backbone.depth)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in ("feature_mean", "feature_std")}
    assert set(converted) == set(ours), (set(converted) ^ set(ours))
    assert all(tuple(converted[k].shape) == ours[k] for k in ours)
    assert sum(v.numel() for v in state.values()) == manifest["num_parameters"] == 341_924_864


@pytest.mark.parametrize(
    "keys, chain, semantic_input",
    [
        ({"start_from_cond": True, "explict": False, "concat_cond": False}, "implicit", False),
        ({"start_from_cond": True, "explict": False, "concat_cond": True}, "implicit", True),
        ({"start_from_cond": False, "explict": True, "concat_cond": False}, "explicit", True),  # the yaml's spelling
        ({"start_from_cond": False, "explicit": True, "concat_cond": True}, "explicit", True),
    ],
)
def test_official_variants_detected(cfm, keys, chain, semantic_input):
    args = {k: v for k, v in cfm["config"].items() if k not in ("explict", "explicit", "start_from_cond", "concat_cond")}
    cfg = flow_config_from_official({**args, **keys})
    assert (cfg.chain, cfg.semantic_input, cfg.official_mode) == (chain, semantic_input, True)
    assert cfg.backbone.dropout == 0.1 and cfg.time_embedding == "raw"


def test_unsupported_official_variants_refused(cfm):
    args = dict(cfm["config"])
    with pytest.raises(ModelUnavailableError, match="neither the semantic prior"):
        flow_config_from_official({**args, "start_from_cond": False, "explict": False})
    with pytest.raises(ModelUnavailableError, match="only 'uconformer'"):
        flow_config_from_official({**args, "backbone_type": "conformer"})
