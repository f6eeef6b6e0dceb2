"""The configuration: every setting declared once, validated in one place, coerced from text."""

import dataclasses

import pytest

from lora_core.settings.config import (
    BASE_FIELDS,
    FIELDS,
    LABELS,
    ConfigError,
    ExperimentConfig,
    cli_name,
    coerce,
    field_name,
    make_config,
    preset,
)

SMALL = dict(n_samples=512, n_eval=256, d_in=24, hidden=20, d_out=16, pretrain_epochs=30, epochs=30,
             batch_size=32, lr=1e-2, device="cpu")


@pytest.mark.parametrize("bad, match", [
    (dict(rank=0), "rank"), (dict(rank=21), "smallest dimension"), (dict(alpha=float("nan")), "alpha"),
    (dict(lr=-1.0), "lr"), (dict(shift="diagonal"), "shift"), (dict(shift="low_rank", shift_rank=17), "shift_rank"),
    (dict(n_samples=0), "n_samples"), (dict(shift_scale=float("inf")), "shift_scale"), (dict(bogus=1), "unknown"),
    (dict(n_samples=9_000_000, d_in=20_000), "GiB"), (dict(rank=True), "rank"),
])
def test_invalid_configurations_are_refused_with_a_reason(bad, match):
    with pytest.raises(ConfigError, match=match):
        make_config(**{**SMALL, **bad})


def test_article_preset_is_exactly_the_article():
    c = preset("article")
    assert (c.n_samples, c.d_in, c.hidden, c.d_out) == (10_000, 1001, 1000, 1000)
    assert (c.shift, c.shift_scale, c.rank, c.alpha, c.init) == ("constant", 1.0, 1, 1.0, "gaussian")
    assert (c.pretrain_epochs, c.epochs, c.batch_size, c.lr) == (100, 100, 128, 1e-3)


@pytest.mark.parametrize("name, text, value", [
    ("rank", "4", 4), ("rank", "4.0", 4), ("seed", "1e3", 1000), ("alpha", "0.5", 0.5),
    ("shift", "low_rank", "low_rank"),
])
def test_coerce_parses_text(name, text, value):
    assert coerce(name, text) == value and type(coerce(name, text)) is type(value)


@pytest.mark.parametrize("name, text", [("rank", "2.5"), ("rank", "nan"), ("rank", "abc"), ("alpha", "<b>1</b>"),
                                        ("nope", "1"), ("epochs", "inf"),
                                        ("alpha", "nan"), ("shift_scale", "-inf"), ("lr", "1e999")])
def test_coerce_refuses_what_is_not_a_value(name, text):
    with pytest.raises(ConfigError):
        coerce(name, text)


def test_every_setting_declares_help_and_the_playground_ones_a_label_and_a_place():
    for name, f in FIELDS.items():
        meta = f.metadata
        assert meta["help"], name
        assert (meta["label"] is None) == (meta["group"] is None), name  # a label means a place on the page
        if f.type == "int":
            assert meta["lo"] is not None and meta["hi"] is not None, name
    assert list(LABELS)[:3] == ["task", "rank", "alpha"] and LABELS["rank"] == "Rank r"
    assert {"d_in", "seed", "lr", "dtype", "device"} <= set(BASE_FIELDS)
    assert not {"rank", "alpha", "method", "shift", "epochs"} & set(BASE_FIELDS)


def test_cli_and_url_names_round_trip():
    for name in FIELDS:
        assert field_name(cli_name(name)) == name
    assert cli_name("shift_scale") == "shift-scale" and field_name(" Shift-Scale ") == "shift_scale"
    assert field_name("shift_scale") == "shift_scale"


def test_preset_overrides_and_unknown_preset():
    assert preset("article", rank=3).rank == 3
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
    assert dataclasses.asdict(preset("default")) == preset("default").to_dict()


@pytest.mark.parametrize("call", [
    lambda: preset(["article"]),  # a name that is no string
    lambda: ExperimentConfig().replace(nope=1),
    lambda: ExperimentConfig().replace(rank="2"),
    lambda: coerce("shift", 5),
    lambda: coerce("shift", "sideways"),
    lambda: coerce("use_dora", 3),
])
def test_the_api_raises_config_error_for_every_bad_input(call):
    with pytest.raises(ConfigError):
        call()


@pytest.mark.parametrize("name", ["alpha", "lr", "shift_scale", "noise", "lr_ratio"])
@pytest.mark.parametrize("tiny", ["1e-320", "1e-300", "1e-13"])
def test_a_setting_too_small_to_change_anything_is_refused_by_name(name, tiny):
    with pytest.raises(ConfigError, match=rf"^{name} {tiny} is too small to change anything"):
        coerce(name, tiny)
    with pytest.raises(ConfigError, match=rf"^{name} .* too small"):
        preset("default", **{name: float(tiny)})
    assert coerce(name, "1e-12") == 1e-12  # the smallest allowed


def test_an_error_quotes_the_value_as_typed():
    with pytest.raises(ConfigError, match=r"got 99999999999999999999$"):
        coerce("rank", "99999999999999999999")
    with pytest.raises(ConfigError, match=r"got -3$"):
        coerce("alpha", " -3 ")
    assert coerce("rank", "12") == 12 and coerce("rank", "1e1") == 10
