"""MixViT teacher and MixFormerV2: official layouts, sizes, heads, template cache, checkpoint surgery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import fixtures_root
from parity_harness import OFFICIAL_CONFIGS, PARITY_FAMILIES, forward_kwargs, official_config
from trackers.errors import SetupError
from trackers.models.checkpoints import load_strict, load_weights
from trackers.models.mixformerv2 import MixFormerV2, refresh_position_tables
from trackers.models.surgery import prune_blocks_state_dict, reduce_mlp_state_dict
from trackers.models.mixvit import MixViT, convert_official_state_dict as convert_mixvit
from trackers.nn.heads.corner import corner_marginals
from trackers.nn.heads.score import ScoreHead
from trackers.nn.heads.soft_argmax import bin_positions, expectation_1d, soft_argmax_2d
from trackers.nn.template_cache import encode_templates

FAMILIES = ("mixvit", "mixformerv2")
TINY = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64)
SPEC_PARAMETERS = {  # mixformerv2.md §1.11 and §8.4 (measured on the official code)
    "mixformerv2_b": (dict(depth=8), 58_855_201),
    "mixformerv2_s": (dict(depth=4, mlp_ratio=1.0, search_size=224, template_size=112), 16_228_897),
    "mixformerv2_b_72bins": (dict(depth=8, num_bins=72), 58_836_697),
    "stage1_student_12l": (dict(depth=12, num_bins=72, score_head=False), 86_596_824),
}
MIXVIT_B_PARAMETERS = 98_403_894


def _manifests() -> list[Path]:
    root = fixtures_root() / "parity" / "manifests"
    return sorted(root.glob("*.json")) if root.is_dir() else []


def _own_manifests() -> list[Path]:
    """Manifests whose official config is registered by the mixvit/mixformerv2 families."""
    out = []
    for path in _manifests():
        entry = OFFICIAL_CONFIGS.get(json.loads(path.read_text())["config_yaml"])
        if entry is not None and entry[0] in FAMILIES:
            out.append(path)
    return out


def _parity_fixtures() -> list[Path]:
    root = fixtures_root() / "parity"
    dirs = sorted(d for d in root.iterdir() if (d / "meta.json").is_file()) if root.is_dir() else []
    return [d for d in dirs if json.loads((d / "meta.json").read_text())["family"] == "mixformerv2"]


def _shapes(state) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


# ------------------------------------------------------------------ full-size layouts and sizes


@pytest.mark.parametrize("manifest", _own_manifests(), ids=lambda p: p.stem)
def test_full_size_model_reproduces_manifest(manifest: Path):
    spec = json.loads(manifest.read_text())
    with torch.device("meta"):
        model = official_config(spec["config_yaml"])[1]()
    assert _shapes(model.state_dict()) == {k["key"]: tuple(k["shape"]) for k in spec["keys"]}
    assert sum(p.numel() for p in model.parameters()) == spec["total_parameters"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == spec["trainable_parameters"]


@pytest.mark.parametrize("name", sorted(SPEC_PARAMETERS))
def test_mixformerv2_parameter_counts_match_spec(name: str):
    args, total = SPEC_PARAMETERS[name]
    with torch.device("meta"):
        model = MixFormerV2(**args)
    assert sum(p.numel() for p in model.parameters()) == total


def test_mixvit_teacher_parameter_count_matches_spec():
    with torch.device("meta"):
        model = MixViT(head_type="CORNER_UP")
    assert sum(p.numel() for p in model.parameters()) == MIXVIT_B_PARAMETERS


def test_released_mixformer_repo_mixvit_layout_converts_to_teacher():
    """The MixFormer repo's checkpoint (SPM + FrozenBN) loads strictly into the teacher once converted."""
    layouts = {json.loads(p.read_text())["model_class"]: json.loads(p.read_text()) for p in _manifests()}
    if "MixFormerOnlineScore" not in layouts:
        pytest.skip("no MixFormer-repo MixViT manifest in the fixtures")
    spec = layouts["MixFormerOnlineScore"]
    state = {k["key"]: torch.empty(k["shape"], device="meta") for k in spec["keys"]}
    assert any(k.startswith("score_branch.") for k in state)
    with torch.device("meta"):
        teacher = MixViT(head_type="CORNER_UP")
    assert _shapes(convert_mixvit(state)) == _shapes(teacher.state_dict())


def test_mixvit_converter_is_idempotent_on_suite_names():
    model = MixViT(**TINY, depth=1, head_type="CORNER", head_channels=16)
    state = model.state_dict()
    assert _shapes(convert_mixvit(state)) == _shapes(state)


# ------------------------------------------------------------------ heads


def test_soft_argmax_of_one_hot_map_is_cell_top_left():
    f, row, col = 8, 5, 2
    score = torch.zeros(1, 1, f, f)
    score[0, 0, row, col] = 1e4
    xy, probs = soft_argmax_2d(score, bin_positions(f, stride=4))
    assert xy.tolist() == [[col / f, row / f]]
    assert probs[0, row * f + col] == 1


def test_bin_expectation_of_one_hot_is_bin_edge():
    f, i = 96, 95
    logits = torch.zeros(f)
    logits[i] = 1e4
    coord, _ = expectation_1d(logits, bin_positions(f, stride=288 / f))
    assert coord.item() == pytest.approx(i / f, abs=1e-7)  # maximum reachable coordinate (F-1)/F


def test_corner_marginals_are_rows_and_columns():
    f = 4
    prob = torch.zeros(1, f * f)
    prob[0, 1 * f + 3] = 1.0  # row 1 (y), column 3 (x)
    m = corner_marginals(prob, prob)
    assert m["prob_l"].argmax().item() == 3 and m["prob_t"].argmax().item() == 1
    assert torch.equal(m["prob_l"], m["prob_r"]) and torch.equal(m["prob_t"], m["prob_b"])


def test_score_head_reduction_switch():
    torch.manual_seed(0)
    official = ScoreHead(8, 8, "mlp_then_mean")
    paper = ScoreHead(8, 8, "mean_then_mlp")
    paper.load_state_dict(official.state_dict())
    tokens = torch.randn(3, 4, 8)
    per_token = torch.stack([official.layers[1](official.layers[0](tokens[:, k])) for k in range(4)], 1)
    assert torch.allclose(official(tokens), per_token.mean(dim=1).flatten(), atol=1e-6)
    assert torch.allclose(paper(tokens), paper.layers[1](paper.layers[0](tokens.mean(dim=1))).flatten(), atol=1e-6)
    assert not torch.allclose(official(tokens), paper(tokens))
    same = tokens[:, :1].expand(-1, 4, -1)
    assert torch.allclose(official(same), paper(same), atol=1e-6)
    with pytest.raises(ValueError, match="score_reduction"):
        ScoreHead(8, 8, "mean")  # type: ignore[arg-type]


def test_softmax_flag_changes_distributions_not_boxes():
    torch.manual_seed(0)
    model = MixFormerV2(**TINY, depth=1, num_bins=16).eval()
    t, s = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        probs, logits = model(t, t, s, softmax=True), model(t, t, s, softmax=False)
    assert torch.equal(probs.boxes, logits.boxes)
    assert torch.allclose(logits.aux["prob_l"].softmax(-1), probs.aux["prob_l"], atol=1e-6)
    assert probs.score is None


def test_unresolved_bins_refuse_a_forward_then_follow_the_first_weights_loaded():
    source = MixFormerV2(**TINY, depth=1, num_bins=12).eval()
    model = MixFormerV2(**TINY, depth=1, num_bins=None).eval()
    assert model.num_bins is None and not any(k.startswith("box_head.") for k in model.state_dict())
    t, s = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    with pytest.raises(SetupError, match="num_bins: null"):
        model(t, t, s)
    load_weights(model, source.state_dict())
    assert model.num_bins == 12 and list(model.state_dict()) == list(source.state_dict())  # official key order
    with torch.no_grad():
        torch.testing.assert_close(model(t, t, s).boxes, source(t, t, s).boxes)
    model.set_num_bins(20)  # explicit rebuild: a fresh head of the new size
    assert model(t, t, s).aux["prob_l"].shape == (1, 20) and model.box_head.stride == 64 / 20
    assert not model.box_head.training and all(p.requires_grad for p in model.box_head.parameters())
    model.backbone.requires_grad_(False)  # a frozen teacher: the rebuilt head is frozen with it
    model.set_num_bins(8)
    assert not any(p.requires_grad for p in model.box_head.parameters())


# ------------------------------------------------------------------ fast exact inference


def _tiny_v2(**kw) -> MixFormerV2:
    torch.manual_seed(0)
    return MixFormerV2(**{**TINY, "depth": 3, "num_bins": 16, **kw}).eval()


def test_cached_templates_equal_full_forward():
    model = _tiny_v2()
    t, o, s = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = model(t, o, s, softmax=False, run_score_head=True, return_features=(0, 2))
        fast = model.forward_with_cache(model.prepare_templates(t, o), s, False, True, return_features=(0, 2))
    torch.testing.assert_close(fast.boxes, full.boxes, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.score, full.score, atol=1e-5, rtol=0)
    for key in ("prob_l", "prob_t", "prob_r", "prob_b", "reg_tokens", "backbone_feat"):
        torch.testing.assert_close(fast.aux[key], full.aux[key], atol=1e-5, rtol=0)
    assert fast.features.keys() == full.features.keys()
    for i in full.features:
        torch.testing.assert_close(fast.features[i], full.features[i], atol=1e-5, rtol=0)


def test_one_cache_serves_every_frame_and_batch():
    model = _tiny_v2()
    t = torch.randn(1, 3, 32, 32)
    cache = model.prepare_templates(t, t)
    with torch.no_grad():
        for _ in range(2):
            s = torch.randn(3, 3, 64, 64)
            full = model(t.expand(3, -1, -1, -1), t.expand(3, -1, -1, -1), s)
            torch.testing.assert_close(model.forward_with_cache(cache, s).boxes, full.boxes, atol=1e-5, rtol=0)


def test_template_cache_refuses_full_attention():
    from trackers.nn.vit import OneStreamViT

    vit = OneStreamViT(embed_dim=32, depth=1, num_heads=2, template_size=32, search_size=64, attn_mode="full")
    with pytest.raises(ValueError, match="asymmetric"):
        encode_templates(vit.blocks, torch.zeros(1, 4, 32))


@pytest.mark.parametrize("fixture", _parity_fixtures(), ids=lambda d: d.name)
def test_cached_path_matches_official_outputs(fixture: Path):
    meta = json.loads((fixture / "meta.json").read_text())
    model = PARITY_FAMILIES["mixformerv2"].build(meta)
    load_strict(model, torch.load(fixture / "checkpoint.pth.tar", weights_only=True)["net"], fixture.name)
    model.eval()
    inputs = torch.load(fixture / "inputs.pt", weights_only=True)
    expected = torch.load(fixture / "outputs.pt", weights_only=True)
    kw = forward_kwargs(meta, inputs)
    with torch.no_grad():
        cache = model.prepare_templates(kw["template"], kw["online_template"])
        out = model.forward_with_cache(cache, kw["search"], kw["softmax"], kw.get("run_score_head", False))
    spec = meta["outputs"]
    torch.testing.assert_close(out.boxes.unsqueeze(1), expected["pred_boxes"], atol=spec["pred_boxes"]["atol"], rtol=0)
    for side in "ltrb":
        key = f"prob_{side}"
        torch.testing.assert_close(out.aux[key], expected[key], atol=spec[key]["atol"], rtol=spec[key]["rtol"])
    if "pred_scores" in expected:
        torch.testing.assert_close(out.score, expected["pred_scores"], atol=spec["pred_scores"]["atol"], rtol=0)


# ------------------------------------------------------------------ distillation-chain surgery


def test_pruned_checkpoint_equals_removed_blocks_and_zero_gamma():
    """Stage-2b surgery, backbone.remove_blocks and gamma = 0 on the removed blocks agree."""
    removed = (0, 2)
    deep = _tiny_v2(depth=4)
    shallow = _tiny_v2(depth=2)
    load_strict(shallow, prune_blocks_state_dict(deep.state_dict(), removed), "pruned")
    t, s = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        faded = deep(t, t, s, gamma={i: 0.0 for i in removed})
        deep.backbone.remove_blocks(removed)
        assert _shapes(deep.state_dict()) == _shapes(shallow.state_dict())
        torch.testing.assert_close(shallow(t, t, s).boxes, deep(t, t, s).boxes, atol=0, rtol=0)
        torch.testing.assert_close(shallow(t, t, s).boxes, faded.boxes, atol=1e-6, rtol=0)


def test_mlp_reduction_and_new_input_size_load_strictly():
    wide = _tiny_v2(depth=2)
    small = _tiny_v2(depth=2, mlp_ratio=1.0, search_size=48, template_size=16)
    state = refresh_position_tables(reduce_mlp_state_dict(wide.state_dict(), hidden_features=32), small)
    load_strict(small, state, "reduced")
    fc1 = wide.backbone.blocks[0].mlp.fc1.weight
    assert torch.equal(small.backbone.blocks[0].mlp.fc1.weight, fc1[:32])


def test_load_weights_takes_any_chain_stage(tmp_path):
    """One loader for the chain: pruned blocks, MLP reduction at a new input size, score head added or dropped."""
    from trackers.models.checkpoints import load_weights

    deep = _tiny_v2(depth=4, score_head=False)
    torch.save({"state_dict": {f"network.{k}": v for k, v in deep.state_dict().items()}}, tmp_path / "stage1.ckpt")
    pruned = _tiny_v2(depth=2, score_head=True)  # stage 2b -> score-head training: the head keeps its init
    init_score = {k: v.clone() for k, v in pruned.score_head.state_dict().items()}
    load_weights(pruned, tmp_path / "stage1.ckpt", prune_blocks=(0, 2))
    torch.testing.assert_close(pruned.backbone.blocks[1].attn.qkv.weight, deep.backbone.blocks[3].attn.qkv.weight)
    for k, v in pruned.score_head.state_dict().items():
        torch.testing.assert_close(v, init_score[k], rtol=0, atol=0)

    torch.save({"net": pruned.state_dict()}, tmp_path / "online.pth.tar")
    small = _tiny_v2(depth=2, mlp_ratio=1.0, search_size=48, template_size=16, score_head=False)
    tables = [t.clone() for t in small.backbone.position_tables()]
    load_weights(small, tmp_path / "online.pth.tar", reduce_mlp=True)
    assert torch.equal(small.backbone.blocks[0].mlp.fc1.weight, pruned.backbone.blocks[0].mlp.fc1.weight[:32])
    for own, loaded in zip(tables, small.backbone.position_tables()):
        torch.testing.assert_close(loaded, own, rtol=0, atol=0)  # the new input size keeps its own tables


def test_load_weights_keeps_saved_tables_of_the_same_size():
    from trackers.models.checkpoints import load_weights

    model = _tiny_v2(depth=1)
    state = model.state_dict()
    state["backbone.pos_embed_s"] = state["backbone.pos_embed_s"] + 1e-3  # e.g. the official float64-built table
    load_weights(model, state)
    torch.testing.assert_close(model.backbone.pos_embed_s, state["backbone.pos_embed_s"], rtol=0, atol=0)


@pytest.mark.parametrize("family", ["mixvit", "mixformerv2"])
def test_mixformer_forward_is_the_block_interface(family: str):
    torch.manual_seed(0)
    model = MixViT(**TINY, depth=3, head_type="CORNER", head_channels=16).eval() if family == "mixvit" else _tiny_v2()
    t, o, s = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    gamma = {1: 0.5}
    kwargs = {"gamma": gamma} if family == "mixformerv2" else {}
    with torch.no_grad():
        full = model(t, o, s, softmax=False, **kwargs)
        state = model.run_blocks(model.embed(t, o, s), 0, 1)
        state = model.run_blocks(state, 1, 3, gamma=gamma if kwargs else None)
        manual = model.head(model.finalize(state), softmax=False)
    torch.testing.assert_close(manual.boxes, full.boxes, rtol=0, atol=0)
    for key, value in full.aux.items():
        torch.testing.assert_close(manual.aux[key], value, rtol=0, atol=0)
    if family == "mixformerv2":
        torch.testing.assert_close(manual.aux["reg_tokens"], full.aux["backbone_feat"][:, -4:], rtol=0, atol=0)


def test_load_weights_fits_a_network_to_an_in_run_pruned_checkpoint(tmp_path):
    """`lightning track` with the experiment's deep student and a checkpoint written after in-run pruning."""
    from trackers.models.checkpoints import load_weights

    trained = _tiny_v2(depth=4)
    trained.backbone.remove_blocks([1, 2])
    ckpt = {"state_dict": {f"network.{k}": v for k, v in trained.state_dict().items()}, "pruned_blocks": [1, 2]}
    torch.save(ckpt, tmp_path / "stage2.ckpt")
    fresh = _tiny_v2(depth=4)
    load_weights(fresh, tmp_path / "stage2.ckpt")
    assert fresh.backbone.depth == 2
    torch.testing.assert_close(fresh.backbone.blocks[1].mlp.fc2.weight, trained.backbone.blocks[1].mlp.fc2.weight)
    already = _tiny_v2(depth=2)  # built at the final depth: loads as is
    load_weights(already, tmp_path / "stage2.ckpt")
    assert already.backbone.depth == 2
