"""`churn registry`: versions, the champion and promotion by hand."""

from __future__ import annotations

import typer

from churn.cli.common import settings

app = typer.Typer(help="Inspect the model registry and promote by hand.", no_args_is_help=True)


@app.command("list")
def registry_list(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per version."),
) -> None:
    """List every version, oldest first.

    * marks the champion, INCOMPLETE a failed publish, and ROLLOUT FAILED a version whose
    last KServe rollout did not become Ready (with the time, the reason and what it was
    rolled back to). A damaged champion pointer does not stop the listing: ! marks the
    version it names, if any, and a last line (on stderr with --json) says what is wrong and
    how to repair it.

    """
    import dataclasses
    import json

    from churn.release.registry import open_registry

    registry = open_registry(settings().registry)
    pointer = registry.pointer()
    # Later records win: a version redeployed successfully since is no longer failed.
    last_rollout = {record["version"]: record for record in registry.rollouts()}
    for info in registry.list_versions():
        named = info.version == pointer.version
        is_champion = named and not pointer.damaged
        rollout = last_rollout.get(info.version)
        if as_json:
            row = {**dataclasses.asdict(info), "champion": is_champion, "last_rollout": rollout}
            typer.echo(json.dumps(row))
            continue
        metrics = " ".join(
            f"{k}={v:.4g}"
            for k, v in sorted(info.metrics.items())
            if isinstance(v, int | float) and not isinstance(v, bool)
        )
        state = "complete" if info.complete else "INCOMPLETE"
        mark = "!" if named and pointer.damaged else "*" if is_champion else " "
        line = f"{mark} {info.version}  {state}  {metrics}"
        if rollout is not None and rollout.get("outcome") != "succeeded":
            line += f"  ROLLOUT FAILED {_rollout_summary(rollout)}"
        typer.echo(line)
    if pointer.damaged:
        typer.echo(f"! {registry.damage_message(pointer)}", err=as_json)


def _rollout_summary(rollout: dict) -> str:
    restored = (
        f"rolled back to {rollout.get('previous') or rollout.get('previous_storage_uri')}"
        if rollout.get("rolled_back")
        else "nothing rolled back"
    )
    return f"{rollout.get('finished_at')} ({rollout.get('reason')}; {restored})"


@app.command("champion")
def registry_champion(
    as_json: bool = typer.Option(False, "--json", help="Print the version as JSON."),
) -> None:
    """Show the champion version and the storageUri KServe serves it from."""
    import dataclasses
    import json

    from churn.errors import RegistryError
    from churn.release.registry import open_registry

    info = open_registry(settings().registry).champion()
    if info is None:
        raise RegistryError("no champion yet: promote a complete version first")
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(info)))
        return
    typer.echo(f"{info.model_name} {info.version}\nstorageUri: {info.storage_uri}")
    for key, value in sorted(info.metrics.items()):
        typer.echo(f"  {key}: {value}")


@app.command("promote")
def registry_promote(
    version: str = typer.Argument(..., help="A complete version id (see `churn registry list`)."),
    expect: str | None = typer.Option(
        None,
        "--expect",
        help="Promote only if this version is still the champion ('none': no champion yet), "
        "as the pipeline does after its gate.",
    ),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Replace a damaged champion pointer (not JSON, not naming a version id, or naming a "
        "missing or incomplete version); refused while the pointer is sound.",
    ),
    allow_breaking_input_change: str = typer.Option(
        "",
        "--allow-breaking-input-change",
        metavar="TEXT",
        help="Allow a version whose input spec (channels, bins, length, horizon, features, "
        "vocabularies) differs from the champion's, naming the change; clients must change too.",
    ),
) -> None:
    """Point the champion at a version by hand, for example after a refused promotion.

    The pointer moves by compare-and-swap on the bytes just read, so a promotion running at
    the same time is never overwritten unseen; a repair is a compare-and-swap too, and of two
    concurrent repairs only one wins. Deploy afterwards (the KServe overlay's storageUri, or
    `churn serve`).
    """
    from churn.errors import RegistryError
    from churn.release.registry import ANY, DAMAGED, open_registry

    if repair and expect is not None:
        raise RegistryError("--repair replaces a damaged pointer whatever it holds; drop --expect")
    registry = open_registry(settings().registry)
    expected = (
        DAMAGED if repair else ANY if expect is None else (None if expect == "none" else expect)
    )
    previous = registry.pointer()
    info = registry.promote(
        version, expected_champion=expected, allow_input_change=allow_breaking_input_change
    )
    was = "damaged pointer" if previous.damaged else previous.version or "none"
    typer.echo(f"champion of {info.model_name}: {was} -> {info.version}")
    typer.echo(f"storageUri: {info.storage_uri}")
