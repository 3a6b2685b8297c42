"""`yyai archive` (pack model files and metadata into a .yyar) and `yyai inspect` (verify one)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import typer

from yyai_kernel.archive import SUFFIX, Manifest, read_manifest, verify
from yyai_kernel.cli import CHANGE, LOOK, app, fail
from yyai_kernel.errors import YyaiError
from yyai_kernel.quiet import VERBOSE_HELP, quiet_tensorflow
from yyai_kernel.types import (
    Combine,
    FeatureKind,
    FileRole,
    ImageSpec,
    InputKind,
    InputSpec,
    Layout,
    OutputSpec,
)


def _number(text: str, option: str) -> float:
    """A rational number: a decimal (0.0078125, -1, 1e-3) or a fraction of two (1/255, 1/127.5, 2/255)."""
    numerator, slash, denominator = text.strip().partition("/")
    try:
        value = Fraction(numerator.strip()) / (Fraction(denominator.strip()) if slash else 1)
    except (ValueError, ZeroDivisionError):
        raise typer.BadParameter(f"{text!r} is not a number or a fraction such as 1/255 or 1/127.5",
                                 param_hint=option) from None
    return float(value)


def scaling_formula(scale: float, offset: float) -> str:
    """``x = pixel / 127.5 - 1``: the preprocessing as a person writes it (a division when the
    scale is 1/n for a short n, the offset's sign folded in, no ``* 1`` or ``+ 0``)."""
    term = "pixel"
    if scale == -1:
        term = "-pixel"
    elif scale not in (1, 0):
        divisor = 1 / scale
        short = float(f"{divisor:.6g}")
        term = f"pixel / {short:g}" if abs(short - divisor) <= 1e-9 * abs(divisor) else f"pixel * {scale:.6g}"
    elif scale == 0:
        term = "0 * pixel"
    if offset > 0:
        return f"x = {term} + {offset:.6g}"
    if offset < 0:
        return f"x = {term} - {-offset:.6g}"
    return f"x = {term}"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _input_shape(text: str) -> list[int]:
    try:
        shape = [int(part) for part in _csv(text)]
    except ValueError:
        shape = []
    if not shape or any(n < 1 for n in shape):
        raise typer.BadParameter(f"{text!r} is not a shape like 8,8,1", param_hint="--input-shape")
    return shape


@app.command("archive", rich_help_panel=CHANGE)
def archive_cmd(
    name: str = typer.Option(..., "--name", help="Model name: lower case letters, digits, '_', '.', '-'."),
    version: int = typer.Option(..., "--version", min=1, help="Integer version, 1 or more."),
    model: list[Path] = typer.Option(..., "--model", exists=True, dir_okay=False, readable=True,
                                     help="A .h5 or .keras model file; repeat for an ensemble."),
    input_shape: str | None = typer.Option(
        None, "--input-shape", help="Input shape without the batch axis, e.g. 8,8,1 (default: read from the first "
        "model, which must fix it)."),
    dtype: str = typer.Option(InputSpec.dtype, "--dtype", help="Input dtype the model expects."),
    channels_first: bool = typer.Option(False, "--channels-first",
                                        help="The channel axis comes first, e.g. --input-shape 3,64,64."),
    color: str | None = typer.Option(
        None, "--color", help="Channel order the model expects: grayscale, rgb or bgr. "
        "Defaults to grayscale for 1 channel; required for 3."),
    scale: str = typer.Option(f"{ImageSpec.scale:g}", "--scale", help="x = pixel * scale + offset; a number or a "
                              "fraction such as 1/255 or 1/127.5 (the default 1 feeds pixels 0-255 as they are)."),
    offset: str = typer.Option(f"{ImageSpec.offset:g}", "--offset",
                               help="Added after scaling; a number or a fraction, such as -1."),
    resize: str = typer.Option(ImageSpec.resize, "--resize", help="How an image of another size is fitted to the input "
                               "shape: stretch (each axis scaled on its own; the aspect ratio is not kept)."),
    labels: str | None = typer.Option(None, "--labels", help="Classification labels, comma separated: a,b,c."),
    labels_file: Path | None = typer.Option(
        None, "--labels-file", exists=True, dir_okay=False,
        help="Classification labels, one per line; the file is stored in the archive."),
    regression: str | None = typer.Option(
        None, "--regression", help="Regression output names, comma separated: NAME[,NAME]."),
    rounding: int | None = typer.Option(None, "--rounding", min=0, max=15,
                                           help="Decimals to round regression outputs to."),
    combine: str = typer.Option(Combine.MEAN.value, "--combine",
                                help="How members combine: mean, or each (no combined output)."),
    max_batch_size: int | None = typer.Option(None, "--max-batch-size", min=1, help="Batching hint."),
    max_delay_ms: float | None = typer.Option(None, "--max-delay-ms", min=0, help="Batching hint, milliseconds."),
    description: str = typer.Option("", "--description", help="Free text shown by inspect and the dashboard."),
    features: Path | None = typer.Option(
        None, "--features", exists=True, dir_okay=False, readable=True,
        help="A table model: a JSON file listing its features in the model's column order, e.g. "
        '[{"name": "age", "kind": "numeric", "mean": 41.2, "std": 12.5}, {"name": "plan", "kind": "categorical", '
        '"vocabulary": ["free", "pro"], "encoding": "onehot"}]; or a whole input object (several inputs: '
        '{"kind": "several", "inputs": [...]}). The image options do not apply.'),
    tensor: bool = typer.Option(False, "--tensor", help="The model takes a tensor (numbers as they are, shape from "
                                "--input-shape or the model, --dtype), not images."),
    sample: list[Path] = typer.Option([], "--sample", exists=True, dir_okay=False,
                                      help="A sample input stored as samples/<file name> (an image, a CSV of rows, "
                                      "a .npy); repeatable."),
    eval_set: Path | None = typer.Option(None, "--eval-set", exists=True, dir_okay=False,
                                         help="A labelled set stored as eval/<file name> (a zip, or a CSV for a "
                                         "table model)."),
    convert: bool = typer.Option(False, "--convert", help="Re-save .h5 members in the native .keras format."),
    trust: bool = typer.Option(False, "--trust", help="Allow Lambda layers with Python code (runs that code)."),
    output_dir: Path = typer.Option(Path("."), "-o", "--output-dir", file_okay=False,
                                    help="Folder to write <name>-<version>.yyar into."),
    force: bool = typer.Option(False, "--force", help="Replace an existing archive of the same name and version."),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Pack model files and their metadata into a .yyar archive.

    The input shape is read from the first model unless --input-shape says it. Prints the
    preprocessing it recorded, and warns when float inputs get unscaled pixels.

    Examples:

        yyai archive --name digits --version 1 --model cnn.h5 --input-shape 8,8,1
        --scale 1/255 --labels 0,1,2,3,4,5,6,7,8,9 -o model_archives

        yyai archive --name flowers --version 1 --model mobilenet.keras --color rgb
        --scale 1/127.5 --offset -1 --labels-file labels.txt -o model_archives

        yyai archive --name wine --version 1 --model mlp.keras --features features.json
        --labels class_0,class_1,class_2 --sample rows.csv --eval-set wine-eval.csv -o model_archives
    """
    if sum(x is not None for x in (labels, labels_file, regression)) != 1:
        raise typer.BadParameter("give exactly one of --labels, --labels-file or --regression",
                                 param_hint="--labels")
    if features is not None and tensor:
        raise typer.BadParameter("give --features (a table) or --tensor, not both", param_hint="--features")
    input_spec: InputSpec | dict
    if features is not None or tensor:
        input_spec = _numbers_spec(model[0], name, features, input_shape, dtype, trusted=trust, verbose=verbose)
    else:
        shape = _input_shape(input_shape) if input_shape is not None else _shape_of(model[0], name, trust, verbose)
        input_spec = _input_spec(shape, dtype, color, resize, scale, offset, channels_first)
    output, extra = _output_spec(labels, labels_file, regression, rounding)
    extra += _samples(sample)
    if eval_set is not None:
        extra.append((eval_set, f"eval/{eval_set.name}", FileRole.EVAL))
    batching = {k: v for k, v in (("max_batch_size", max_batch_size), ("max_delay_ms", max_delay_ms))
                if v is not None}
    _write_archive({"name": name, "version": version, "models": list(model), "input_spec": input_spec,
                    "output_spec": output, "description": description, "combine": combine, "batching": batching,
                    "extra_files": extra, "out_dir": output_dir, "convert": convert, "trusted": trust},
                   force=force, verbose=verbose)


def _write_archive(pack_args: dict, *, force: bool, verbose: bool) -> None:
    """Pack (``archive.pack``'s arguments), refusing to replace an archive without ``force``;
    print where it went and the preprocessing it recorded."""
    target = pack_args["out_dir"] / f"{pack_args['name']}-{pack_args['version']}{SUFFIX}"
    if target.exists() and not force:
        fail(f"{target} already exists; pass --force to replace it")
    quiet_tensorflow(verbose)
    from yyai_kernel.archive import pack

    try:
        path = pack(**pack_args)
    except YyaiError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"could not write the archive: {exc}")
    typer.echo(f"wrote {path} ({path.stat().st_size} bytes)")
    _print_preprocessing(read_manifest(path).input)


def _shape_of(path: Path, name: str, trusted: bool, verbose: bool) -> list[int]:
    """The input shape the model file fixes (loaded as ``pack`` will load it), or exit saying
    that --input-shape must give it."""
    quiet_tensorflow(verbose)
    from yyai_kernel.archive import kerasload
    from yyai_kernel.archive.packmodel import model_input_shape

    try:
        model = kerasload.load_member(path, trusted=trusted, model_name=name)
    except YyaiError as exc:
        fail(exc)
    shape = model_input_shape(model)
    if shape is None:
        fail(f"{path.name} does not fix its input shape ({tuple(model.inputs[0].shape)[1:]}); "
             "give it with --input-shape, e.g. --input-shape 224,224,3")
    typer.echo(f"input shape {','.join(map(str, shape))} read from {path.name} (--input-shape overrides it)")
    return shape


def _numbers_spec(path: Path, name: str, features: Path | None, input_shape: str | None, dtype: str, *,
                  trusted: bool, verbose: bool) -> InputSpec | dict:
    """A table's (from the features file) or a tensor's input spec, with what the model says filled in."""
    spec: dict | list
    if features is None:
        shape = {} if input_shape is None else {"shape": _input_shape(input_shape)}
        spec = {"kind": InputKind.TENSOR.value, "dtype": dtype, **shape}
    else:
        try:
            spec = json.loads(features.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise typer.BadParameter(f"{features} is not a JSON features file: {exc}", param_hint="--features") \
                from None
        feature_kinds = {k.value for k in FeatureKind}
        if isinstance(spec, list) and all(isinstance(f, dict) and f.get("kind") in feature_kinds for f in spec):
            spec = {"kind": InputKind.TABLE.value, "features": spec}  # a list of features: one table
        if not isinstance(spec, (dict, list)):
            raise typer.BadParameter(f"{features} must hold a list of features or an input object",
                                     param_hint="--features")
    quiet_tensorflow(verbose)
    from yyai_kernel.archive import kerasload
    from yyai_kernel.archive.packmodel import fill_input_spec

    try:
        return fill_input_spec(spec, kerasload.load_member(path, trusted=trusted, model_name=name))
    except YyaiError as exc:
        fail(exc)


def _input_spec(shape: list[int], dtype: str, color, resize: str, scale: str, offset: str,
                channels_first: bool) -> dict:
    """The manifest's input spec from the options (colour defaults to grayscale for 1 channel)."""
    from yyai_kernel.archive.packmodel import default_color

    layout = Layout.CHANNELS_FIRST.value if channels_first else None
    if color is None:
        color = default_color(shape, layout)
        if color is None:
            raise typer.BadParameter("say which channel order the model expects: rgb or bgr", param_hint="--color")
    return {"shape": shape, "dtype": dtype, "color": color, "resize": resize,
            "scale": _number(scale, "--scale"), "offset": _number(offset, "--offset"),
            **({"layout": layout} if layout else {})}


def _output_spec(labels: str | None, labels_file: Path | None, regression: str | None,
                 rounding: int | None) -> tuple[OutputSpec, list[tuple[Path, str, FileRole]]]:
    """The manifest's output spec, and the labels file to store when labels come from one."""
    if regression is not None:
        return OutputSpec.values(_csv(regression), rounding), []
    if labels_file is None:
        assert labels is not None  # the command checked that exactly one of the three is given
        return OutputSpec.classes(_csv(labels)), []
    try:
        text = labels_file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {labels_file}: {exc}")
    label_list = [line.strip() for line in text.splitlines() if line.strip()]
    return OutputSpec.classes(label_list), [(labels_file, "labels.txt", FileRole.LABELS)]


def _samples(files: list[Path]) -> list[tuple[Path, str, FileRole]]:
    """(file, name in the archive, role) for each sample input."""
    extra: list[tuple[Path, str, FileRole]] = []
    used: set[str] = set()
    for file in files:
        arcname = f"samples/{file.name}"
        if arcname in used:
            fail(f"two samples are named {file.name}; rename one")
        used.add(arcname)
        extra.append((file, arcname, FileRole.SAMPLE))
    return extra


def _print_preprocessing(spec: InputSpec) -> None:
    """The input as recorded, and a warning when a float model would get raw 0-255 pixels."""
    typer.echo(f"  input: {_input_line(spec)}")
    for feature in spec.features():
        typer.echo(f"    feature {feature.name}: {feature.describe()}")
    if spec.image is not None and spec.image.scale == 1 and spec.dtype.startswith("float"):
        typer.echo(f"warning: --scale is 1 and the input is {spec.dtype}: pixels 0-255 reach the model unscaled; "
                   "pass --scale 1/255 if it was trained on 0-1 inputs", err=True)


def _input_line(spec: InputSpec) -> str:
    """The input and its preprocessing in one line: shape, dtype, colour, resize, x = pixel / 127.5 - 1
    (a table: its features and columns; several inputs: each by name)."""
    image = spec.image
    if spec.kind is not InputKind.IMAGE or image is None:
        return spec.preprocessing()
    layout = f" {Layout.CHANNELS_FIRST.value}" if image.channels_first else ""
    return (f"shape {list(spec.shape)}{layout} {spec.dtype} {image.color.value}, resize {image.resize}, "
            f"{scaling_formula(image.scale, image.offset)}")


def inspect_one(path: Path, *, trusted: bool, load_models: bool) -> dict:
    """Inspect one archive: {"path", "ok", "error", "manifest", "members"} (JSON-able)."""
    result = {"path": str(path), "ok": False, "error": None, "manifest": None, "members": []}
    try:
        result["manifest"] = read_manifest(path).data
    except YyaiError:
        pass  # verify below reports the same error with its type
    try:
        report = verify(path, trusted=trusted, load_models=load_models)
    except YyaiError as exc:
        result["error"] = exc.to_dict()
        return result
    specs = {m.path: m for m in report.manifest.members}
    result["members"] = [{**row, "size": specs[row["path"]].size, "sha256": specs[row["path"]].sha256,
                          "source": _source_json(specs[row["path"]])} for row in report.members]
    result["ok"] = True
    return result


def _source_json(member) -> dict | None:
    return member.source.to_json() if member.source is not None else None


def _print_inspection(result: dict) -> None:
    echo = typer.echo
    echo(result["path"])
    if result["manifest"]:
        m = Manifest(result["manifest"])  # read and checked by inspect_one
        echo(f"  name: {m.name}  version: {m.version}  created: {m.created or '?'}")
        if m.description:
            echo(f"  description: {m.description}")
        echo(f"  input: {_input_line(m.input)}")
        for part in m.input.inputs():
            prefix = f"{part.name}." if m.input.kind is InputKind.SEVERAL else ""
            if part.table is not None:
                for feature in part.table.features:
                    echo(f"    feature {prefix}{feature.name}: {feature.describe()}")
            elif m.input.kind is InputKind.SEVERAL:
                echo(f"    input {part.name}: tensor {list(part.shape)} {part.dtype}")
        o = m.output
        if o.classification:
            shown = ", ".join(o.labels[:12]) + (", ..." if len(o.labels) > 12 else "")
            echo(f"  output: classification, {len(o.labels)} labels: {shown}")
        else:
            rounding = f", rounded to {o.rounding} decimals" if "rounding" in o.stated else ""
            echo(f"  output: regression: {', '.join(o.names)}{rounding}")
        echo(f"  combine: {m.combine.value}  batching: {m.batching or 'server defaults'}")
        rows = result["members"] or [member.to_json() for member in m.members]
        for row in rows:
            written = f"Keras {row.get('keras_version') or '?'}"
            if row.get("source"):
                source = row["source"]
                written += f", converted from {source['path']} (Keras {source.get('keras_version') or '?'})"
            params = f"  {row['params']} params" if row.get("params") is not None else ""
            fmt = f"  {row['format']}" if row.get("format") else ""
            echo(f"  member {row['name']}: {row['path']}{fmt}  {written}{params}  "
                 f"{row['size']} bytes  sha256 {row['sha256'][:12]}")
        for f in m.files:
            echo(f"  file: {f.path} ({f.role.value}, {f.size} bytes)")
    if result["ok"]:
        echo("  verified: OK")
    else:
        echo(f"  INVALID ({result['error']['type']}): {result['error']['error']}")


@app.command("inspect", rich_help_panel=LOOK)
def inspect_cmd(
    target: Path = typer.Argument(..., exists=True, help="A .yyar file, or a folder of them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    trust: bool = typer.Option(False, "--trust", help="Allow Lambda layers with Python code (runs that code)."),
    load: bool = typer.Option(True, "--load/--no-load", help="Load every member with Keras (default) or only "
                              "check the zip, manifest and checksums."),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Print an archive's manifest and verify it; exit 1 if any archive is invalid.

    Example:

        yyai inspect model_archives/digits-1.yyar

        yyai inspect model_archives --json
    """
    paths = sorted(target.glob(f"*{SUFFIX}")) if target.is_dir() else [target]
    paths = [p for p in paths if not p.name.startswith(".")]
    if not paths:
        fail(f"no {SUFFIX} archives in {target}")
    if load:
        quiet_tensorflow(verbose)
    results = [inspect_one(p, trusted=trust, load_models=load) for p in paths]
    if as_json:
        typer.echo(json.dumps(results if target.is_dir() else results[0], indent=2))
    else:
        for result in results:
            _print_inspection(result)
    bad = sum(not r["ok"] for r in results)
    if bad:
        if not as_json:
            typer.echo(f"error: {bad} of {len(results)} archive(s) invalid", err=True)
        raise typer.Exit(1)


