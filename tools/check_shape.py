"""`make lint`: the shape of every service and the docs that describe it stay true.

1. Every package under services/ has the template's layers (docs/service-template.md) and is covered by
   the import-linter contracts of pyproject.toml (root package, layers container, pure domain, servicekit
   knows no service) — a new service missing from one of them fails here, by name.
2. Every module, class or function docs/service-template.md names in backticks exists (a dotted name
   starting with a Lawtrail package is imported and looked up; a repository path must exist), and every
   snippet marked `<!-- snippet: <path> -->` is a copy of that file (in order, whitespace aside; a
   `...` line skips).
3. Every relative link in docs/ and in the READMEs resolves to a file or directory.
4. Every events contract (proto/**/*_events.proto) has its topic (`servicekit.topics`) in
   deploy/local/topics.toml.

Prints each problem with where it is and exits 1 if there is any.
"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "docs" / "service-template.md"
LAYERS = ("bootstrap", "entrypoints", "adapters", "service_layer", "domain")
PACKAGE_PREFIXES = ("servicekit", "lawtrail_local", "lawtrail_client", "lawtrail")
SKIP_DIRS = {".venv", "node_modules", ".git", "contracts", ".lawtrail"}

problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)


def service_packages() -> dict[str, str]:
    """service directory name -> its Python package."""
    found = {}
    for service in sorted(p for p in (ROOT / "services").iterdir() if (p / "src").is_dir()):
        packages = [p.name for p in (service / "src").iterdir() if (p / "__init__.py").is_file()]
        if len(packages) != 1:
            problem(f"services/{service.name}/src: exactly one package expected, found {packages}")
            continue
        found[service.name] = packages[0]
    return found


def check_layers_and_contracts(services: dict[str, str]) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    contracts = config.get("contracts", [])
    layered = [
        c for c in contracts if c.get("type") == "layers" and list(c.get("layers", [])) == list(LAYERS)
    ]
    pure = [
        c
        for c in contracts
        if c.get("type") == "forbidden" and "servicekit" in c.get("forbidden_modules", [])
    ]
    servicekit_alone = [
        c for c in contracts if c.get("type") == "forbidden" and c.get("source_modules") == ["servicekit"]
    ]
    for service, package in services.items():
        src = ROOT / "services" / service / "src" / package
        for layer in LAYERS:
            if not ((src / layer).is_dir() or (src / f"{layer}.py").is_file()):
                problem(f"services/{service}: no `{layer}` in {package}/ (docs/service-template.md, Layers)")
        where = f"services/{service} ({package})"
        if package not in config.get("root_packages", []):
            problem(f"{where} is missing from [tool.importlinter] root_packages in pyproject.toml")
        if not any(package in c.get("containers", []) for c in layered):
            problem(f"{where} is missing from the `containers` of the layers contract in pyproject.toml")
        if not any(f"{package}.domain" in c.get("source_modules", []) for c in pure):
            problem(f"{where}: `{package}.domain` is missing from the pure-domain contract in pyproject.toml")
        if not any(package in c.get("forbidden_modules", []) for c in servicekit_alone):
            problem(f"{where} is missing from the forbidden_modules of 'servicekit knows no service'")


def _resolve(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def check_template_names(services: dict[str, str]) -> None:
    if not TEMPLATE.is_file():
        problem("docs/service-template.md is missing")
        return
    packages = (*services.values(), *PACKAGE_PREFIXES)
    text = TEMPLATE.read_text(encoding="utf-8")
    check_snippets(text)
    # Code blocks are checked as snippets (above), not for names; keep their lines for the line numbers.
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    service_roots = [ROOT / "services" / service / "src" / package for service, package in services.items()]
    for line_no, line in enumerate(text.splitlines(), 1):
        for span in re.findall(r"`([^`\s]+)`", line):
            name = span.rstrip("()").removesuffix("/")
            where = f"docs/service-template.md:{line_no}"
            if "/" in name and re.fullmatch(r"[\w./-]+", name):
                # a repository path, or a path inside a service package (`domain/commands.py`)
                if not any((base / name).exists() for base in (ROOT, *service_roots)):
                    problem(f"{where}: `{span}` does not exist")
            elif (
                re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", name)
                and name.split(".")[0] in packages
                and not _resolve(name)
            ):
                problem(f"{where}: `{span}` does not exist")


def check_snippets(text: str) -> None:
    for match in re.finditer(r"<!-- snippet: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S):
        source = ROOT / match.group(1)
        where = f"docs/service-template.md:{text[: match.start()].count(chr(10)) + 1}"
        if not source.is_file():
            problem(f"{where}: snippet source {match.group(1)} does not exist")
            continue
        # Compared without whitespace: `ruff format` also formats the snippets in Markdown, and may join or
        # split lines differently at the doc's indentation.
        code = re.sub(r"\s+", "", source.read_text(encoding="utf-8"))
        at = 0
        for part in re.split(r"^\s*\.\.\.\s*$", match.group(2), flags=re.M):
            wanted = re.sub(r"\s+", "", part)
            found = code.find(wanted, at)
            if found < 0:
                problem(
                    f"{where}: snippet is not a copy of {match.group(1)} (in this order): {part.strip()[:80]}"
                )
                break
            at = found + len(wanted)


def documents() -> Iterator[Path]:
    yield from sorted((ROOT / "docs").rglob("*.md"))
    for readme in sorted(ROOT.rglob("README.md")):
        if not SKIP_DIRS & set(readme.relative_to(ROOT).parts):
            yield readme


def check_links() -> None:
    for doc in documents():
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if path and not (doc.parent / path).exists():
                problem(f"{doc.relative_to(ROOT)}: the link ({target}) leads nowhere")


def check_topics() -> None:
    from servicekit.topics import events_topic

    declared = {t["name"] for t in tomllib.loads((ROOT / "deploy/local/topics.toml").read_text())["topic"]}
    for proto in sorted((ROOT / "proto").rglob("*_events.proto")):
        match = re.search(r"^package\s+([\w.]+);", proto.read_text(encoding="utf-8"), flags=re.M)
        if match and events_topic(match.group(1)) not in declared:
            problem(
                f"{proto.relative_to(ROOT)}: topic {events_topic(match.group(1))} is not declared in "
                "deploy/local/topics.toml"
            )


def main() -> None:
    services = service_packages()
    check_layers_and_contracts(services)
    check_template_names(services)
    check_links()
    check_topics()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(f"{len(problems)} problem(s) in the shape of the services or their docs")
    print(f"shape ok: {len(services)} services, template names, links in docs and READMEs, topics")


if __name__ == "__main__":
    main()
