"""CLI commands for tasks: init, create, show, list, ready, blocked, update, close, reopen,
label, comment."""

from __future__ import annotations

from typing import Any

import click

from ..validation import printable
from . import listing_ops, task_ops
from .common import emit_json, get_ctx, json_option

PRIORITY = click.IntRange(0, 4)


@click.command()
@click.option("--prefix", help="Task id prefix (default: from the repository's name).")
@click.option("--database", metavar="URL",
              help="Keep the ledger in PostgreSQL at URL (postgresql://user@host/db), shared "
                   "by every clone and worker: written to .taskmill/config.toml as [ledger] "
                   "url (commit it; TASKMILL_DATABASE_URL overrides). Keep a password out "
                   "of it: libpq reads PGPASSWORD or ~/.pgpass.")
@json_option
def init(prefix: str | None, database: str | None) -> None:
    """Create the ledger (.taskmill/) in this git repository."""
    from ..ledger import database_url
    from ..project import init as do_init

    ctx = get_ctx()
    project = do_init(ctx.cwd, ctx.env, prefix=prefix, database=database)
    try:
        url = database_url(project.config.ledger_url, ctx.env)
        info: dict[str, Any] = {
            "root": str(project.paths.root), "config": str(project.paths.config),
            "database": _redacted(url) if url else str(project.paths.db),
            "prefix": project.config.prefix, "synced_ledger": None}
        if url is None and project.ledger.store.task_count() == 0:
            # a fresh clone of a repository whose ledger is shared: say how to load it
            from ..sync.gitstore import has_synced_ledger

            info["synced_ledger"] = has_synced_ledger(project.paths.root, ctx.env)
    finally:
        project.close()
    if ctx.json:
        emit_json(info)
    else:
        click.echo(f"taskmill ledger ready in {info['root']}/.taskmill (prefix {info['prefix']})")
        if url:
            click.echo(f"  in PostgreSQL at {info['database']}: commit .taskmill/config.toml"
                       " so every clone and worker uses it")
        else:
            click.echo("  commit .taskmill/config.toml; the database stays out of git")
        synced = info["synced_ledger"]
        if synced is not None:
            place = "in this clone" if synced.startswith("refs/") else f"on {synced}"
            click.echo(f"  a synced ledger exists {place} (refs/taskmill/ledger)")
            click.echo("  next: taskmill sync" + ("" if synced.startswith("refs/") or
                                                 synced == "origin" else f" --remote {synced}")
                       + "   (loads it)")
        else:
            click.echo("  next: taskmill create \"First task\"   or   taskmill import plan.toml")


def _redacted(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _task_options(fn: Any) -> Any:
    options = [
        click.option("-d", "--description", help="What the task is about."),
        click.option("--design", help="Design notes."),
        click.option("--acceptance", "acceptance_criteria", help="Acceptance criteria."),
        click.option("--notes", help="Free notes."),
        click.option("-p", "--priority", type=PRIORITY, help="0 (highest) to 4."),
        click.option("-t", "--type", "issue_type", help="task, bug, feature, epic, chore..."),
        click.option("-a", "--assignee", help="Who works on it."),
        click.option("--external-ref", help="A reference elsewhere (e.g. gh-123)."),
        click.option("--agent", help="The agent that works this task: an [agents.NAME] of the"
                     " config or a built-in one (claude, codex, ...); update --agent '' clears."),
        click.option("--check", "checks", multiple=True,
                     help="A shell command that decides whether the task is done (repeatable)."),
        click.option("--metadata", help="A JSON object of metadata."),
        click.option("--hints", help="A JSON object of free-form hints for the agent."),
        click.option("--role", help="The role that works this task: .taskmill/roles/NAME.toml"
                     " (its agent, prompt, checks and budget); update --role '' clears."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command()
@click.argument("title", required=False)
@_task_options
@click.option("--template", help="Ask for work with a request template (.taskmill/templates/"
              "NAME.toml; `taskmill template list`): its fields instead of a title.")
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE",
              help="A field of the --template (repeatable).")
@click.option("-l", "--label", "labels", multiple=True, help="A label (repeatable).")
@click.option("--after", multiple=True, help="An id this task waits on (blocks; repeatable).")
@click.option("--parent", help="The parent task (parent-child).")
@click.option("--discovered-from", help="The task whose work found this one.")
@click.option("--id", "task_id", help="Use this id instead of a generated one.")
@json_option
def create(title: str | None, description: str | None, design: str | None,
           acceptance_criteria: str | None, notes: str | None, priority: int | None,
           issue_type: str | None, assignee: str | None, external_ref: str | None,
           agent: str | None, checks: tuple[str, ...], metadata: str | None, hints: str | None,
           role: str | None, template: str | None, fields: tuple[str, ...],
           labels: tuple[str, ...], after: tuple[str, ...], parent: str | None,
           discovered_from: str | None, task_id: str | None) -> None:
    """Create a task: TITLE and options, or --template NAME with its --field NAME=VALUE."""
    if template is not None or fields:
        others = {"TITLE": title, "--description": description, "--design": design,
                  "--acceptance": acceptance_criteria, "--notes": notes, "--type": issue_type,
                  "--assignee": assignee, "--external-ref": external_ref, "--agent": agent,
                  "--check": checks, "--metadata": metadata, "--hints": hints, "--role": role,
                  "--parent": parent, "--discovered-from": discovered_from, "--id": task_id}
        given = [name for name, value in others.items() if value]
        if template is None:
            raise click.UsageError("--field is for --template")
        if given:
            raise click.UsageError(
                f"--template fills in the task from its fields: {', '.join(given)} cannot "
                "be given with it (it takes --field, --label, --after and --priority)")
        from .template_cmd import create_with_template

        create_with_template(get_ctx(), template, fields, labels=labels, after=after,
                             priority=priority)
        return
    if title is None:
        raise click.UsageError("give a TITLE (or --template NAME)")
    task_ops.create(
        get_ctx(), title, description=description, design=design,
        acceptance_criteria=acceptance_criteria, notes=notes, priority=priority,
        issue_type=issue_type, assignee=assignee, external_ref=external_ref, agent=agent,
        checks=checks, metadata=metadata, hints=hints, role=role, labels=labels, after=after,
        parent=parent, discovered_from=discovered_from, task_id=task_id)


@click.command()
@click.argument("task_id")
@json_option
def show(task_id: str) -> None:
    """Show a task with its dependencies, comments and attempts."""
    task_ops.show(get_ctx(), task_id)


@click.command(name="list")
@click.option("-s", "--status", "statuses", multiple=True, help="Only this status (repeatable).")
@click.option("-l", "--label", help="Only tasks with this label.")
@click.option("-t", "--type", "issue_type", help="Only this type.")
@click.option("-a", "--assignee", help="Only this assignee.")
@click.option("--parent", help="Only children of this task.")
@click.option("--all", "include_hidden", is_flag=True, help="Include tombstoned records.")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="At most this many.")
@json_option
def list_cmd(statuses: tuple[str, ...], label: str | None, issue_type: str | None,
             assignee: str | None, parent: str | None, include_hidden: bool,
             limit: int | None) -> None:
    """List tasks (tombstoned records hidden unless --all)."""
    listing_ops.list_tasks(get_ctx(), {
        "status": list(statuses) or None, "label": label, "issue_type": issue_type,
        "assignee": assignee, "parent": parent, "include_hidden": include_hidden,
        "limit": limit})


_BEADS_COMPAT = click.option(
    "--beads-compat", is_flag=True,
    help="As Beads: a blocked or deferred parent does not hold back its children, and"
         " `blocked` lists only tasks a dependency holds (also: [ledger] beads_compat).")


@click.command()
@click.option("-n", "--limit", type=click.IntRange(min=1), help="At most this many.")
@_BEADS_COMPAT
@json_option
def ready(limit: int | None, beads_compat: bool) -> None:
    """Open tasks with nothing blocking them, highest priority first, then oldest first.

    Containers (tasks with children, e.g. epics) are listed apart and marked
    (``"container": true``): they are not work, and `taskmill run` never dispatches them.
    Records Beads never offers as work (agents, molecules, gates, messages, ...; pinned or
    ephemeral ones) are left out, and so are tasks deferred (``defer_until``) to later."""
    task_ops.ready(get_ctx(), limit, beads_compat)


@click.command()
@_BEADS_COMPAT
@json_option
def blocked(beads_compat: bool) -> None:
    """Tasks held back, with what holds each (a dependency cycle is named)."""
    listing_ops.blocked(get_ctx(), beads_compat)


@click.command()
@click.argument("task_id")
@click.option("--title", help="A new title.")
@_task_options
@click.option("-s", "--status", type=click.Choice(["open", "in_progress", "blocked", "deferred",
                                                   "closed"]))
@click.option("--append-notes", help="Text appended to the notes.")
@click.option("--clear-checks", is_flag=True, help="Remove the task's checks.")
@click.option("--claim", is_flag=True, help="Atomically claim the task (open -> in_progress).")
@json_option
def update(task_id: str, title: str | None, description: str | None, design: str | None,
           acceptance_criteria: str | None, notes: str | None, priority: int | None,
           issue_type: str | None, assignee: str | None, external_ref: str | None,
           agent: str | None, checks: tuple[str, ...], metadata: str | None, hints: str | None,
           role: str | None, status: str | None, append_notes: str | None, clear_checks: bool,
           claim: bool) -> None:
    """Change a task's fields, or --claim it."""
    changes = task_ops.update_changes(
        {"title": title, "description": description, "design": design,
         "acceptance_criteria": acceptance_criteria, "notes": notes, "priority": priority,
         "issue_type": issue_type, "assignee": assignee, "external_ref": external_ref,
         "agent": agent, "status": status, "role": role},
        checks=checks, clear_checks=clear_checks, metadata=metadata, hints=hints)
    if not changes and not append_notes and not claim:
        raise click.UsageError("nothing to change: give at least one option (see --help)")
    task_ops.update(get_ctx(), task_id, changes, agent=agent, assignee=assignee,
                    append_notes=append_notes, claim=claim)


@click.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("-r", "--reason", help="Why it is closed.")
@json_option
def close(task_ids: tuple[str, ...], reason: str | None) -> None:
    """Close tasks; what they blocked may become ready. All or nothing: when one of the ids
    is not found, ambiguous or cannot be closed, none is closed."""
    task_ops.close(get_ctx(), task_ids, reason)


@click.command()
@click.argument("task_ids", nargs=-1, required=True)
@json_option
def reopen(task_ids: tuple[str, ...]) -> None:
    """Reopen closed (or blocked, deferred) tasks, all or nothing."""
    ctx = get_ctx()
    ledger = ctx.project().ledger
    tasks = ledger.reopen_many(task_ids)
    if ctx.json:
        emit_json(tasks[0].to_json() if len(tasks) == 1 else [t.to_json() for t in tasks])
    else:
        for task in tasks:
            click.echo(f"reopened {printable(task.id)}: {printable(task.title)}")


@click.group()
def label() -> None:
    """Add or remove labels."""


@label.command(name="add")
@click.argument("task_id")
@click.argument("labels", nargs=-1, required=True)
@json_option
def label_add(task_id: str, labels: tuple[str, ...]) -> None:
    """Add labels to a task."""
    ctx = get_ctx()
    task = ctx.project().ledger.add_labels(task_id, labels)
    if ctx.json:
        emit_json(task.to_json())
    else:
        click.echo(f"{task.id}: {printable(', '.join(task.labels))}")


@label.command(name="rm")
@click.argument("task_id")
@click.argument("labels", nargs=-1, required=True)
@json_option
def label_rm(task_id: str, labels: tuple[str, ...]) -> None:
    """Remove labels from a task."""
    ctx = get_ctx()
    task = ctx.project().ledger.remove_labels(task_id, labels)
    if ctx.json:
        emit_json(task.to_json())
    else:
        click.echo(f"{task.id}: {printable(', '.join(task.labels)) or '(no labels)'}")


@click.command()
@click.argument("task_id")
@click.argument("text")
@click.option("--author", help="Who says it (default: the actor).")
@json_option
def comment(task_id: str, text: str, author: str | None) -> None:
    """Add a comment to a task (the next agent iteration's prompt includes it)."""
    ctx = get_ctx()
    if ctx.turn_socket is not None:  # inside a turn: signed as the agent
        note = ctx.remote().comment(task_id, text, author=author)
    else:
        note = ctx.project().ledger.comment(task_id, text, author=author)
    if ctx.json:
        emit_json(note.to_json())
    else:
        click.echo(f"commented on {note.issue_id}")

