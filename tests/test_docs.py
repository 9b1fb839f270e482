"""The documentation holds together: every relative link between the Markdown pages leads to a file, every
``#anchor`` to a heading of that page (GitHub's slugs), and the README stays short."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "CONTRIBUTING.md", "bench/README.md", "manifests/README.md", "tests/schemas/README.md",
         *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
FENCE = re.compile(r"^ *(```|~~~).*?^ *\1", re.M | re.S)
INLINE_CODE = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """The page without its code: links inside code are examples, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text without markup, lowercase, punctuation but '-' and '_' dropped,
    spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>|[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def dead_links(page: str, root: str = ROOT) -> list[str]:
    """Every relative link of ``page`` (a path under ``root``) that leads to no file, folder or heading."""
    with open(os.path.join(root, page)) as f:
        text = prose(f.read())
    dead = []
    for target in LINK.findall(text) + REFERENCE.findall(text):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(root, os.path.dirname(page), path)) if path else \
            os.path.join(root, page)
        if not os.path.exists(resolved):
            dead.append(f"{page}: {target} (no such file)")
        elif anchor and resolved.endswith(".md"):
            with open(resolved) as f:
                if anchor not in anchors(f.read()):
                    dead.append(f"{page}: {target} (no such heading)")
    return dead


def test_every_link_between_the_pages_resolves():
    assert [page for page in PAGES if not os.path.exists(os.path.join(ROOT, page))] == []
    assert [dead for page in PAGES for dead in dead_links(page)] == []


def test_the_readme_reads_in_five_minutes():
    with open(os.path.join(ROOT, "README.md")) as f:
        assert len(f.read().splitlines()) <= 200


def test_the_link_check_finds_a_dead_file_and_a_dead_heading(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# A page\n\n## Pipeline servers: `--server`\n\n## Steps\n\n## Steps\n\n```\n# not a heading\n```\n")
    (tmp_path / "README.md").write_text(
        "See [a](docs/a.md#pipeline-servers---server), [the second](docs/a.md#steps-1), [top](#readme), "
        "[gone](docs/b.md), [nowhere](docs/a.md#not-a-heading), [site](https://example.com/x.md#y),\n"
        "`[code](docs/c.md)`, ![picture](docs/missing.png) and [ref].\n\n# README\n\n[ref]: docs/a.md#step\n")
    assert dead_links("README.md", str(tmp_path)) == [
        "README.md: docs/b.md (no such file)",
        "README.md: docs/a.md#not-a-heading (no such heading)",
        "README.md: docs/missing.png (no such file)",
        "README.md: docs/a.md#step (no such heading)",
    ]


def test_slugs_follow_github():
    assert slug("artifact_transfer — how datasets travel between steps") == \
        "artifact_transfer--how-datasets-travel-between-steps"
    assert slug("metadata_scale — the plan step on Open Images' real size") == \
        "metadata_scale--the-plan-step-on-open-images-real-size"
    assert slug("On a cluster: from an empty OpenShift AI project") == "on-a-cluster-from-an-empty-openshift-ai-project"
    assert slug("train_overhead — our train step versus plain `yolo train`") == \
        "train_overhead--our-train-step-versus-plain-yolo-train"


def table_rows(page: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with ``header``."""
    with open(os.path.join(ROOT, page)) as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_cluster_pages_tables_name_every_step_with_its_image_and_size(default_pipeline):
    import yaml

    from yolo_kfp.infra.pod_size import quantity

    with open(default_pipeline) as f:
        executors = next(yaml.safe_load_all(f))["deploymentSpec"]["executors"]
    steps = {name.removeprefix("exec-"): executor["container"] for name, executor in executors.items()}
    sized = {}
    for cells in table_rows("docs/cluster.md", "step"):
        for step in (s.strip() for s in cells[0].split(",")):
            sized[step] = cells[1:]
    imaged = {step.split("(")[0].strip(): cells[0].strip("`") for cells in table_rows("docs/cluster.md", "image")
              for step in cells[2].split(",")}
    for step, container in steps.items():
        assert container["image"].rsplit("/", 1)[-1].startswith(f"{imaged[step]}:"), step
        if step.startswith("train"):
            continue  # sized by compile options, a formula in the table
        cpu, memory = sized[step]
        request, limit = (quantity(part.strip()) for part in cpu.split("/"))
        resources = container["resources"]
        assert (request, limit) == (resources["cpuRequest"], resources["cpuLimit"]), step
        in_bytes = {round(resources[key] * 1e9) for key in ("memoryRequest", "memoryLimit")}
        assert in_bytes == {quantity(memory)}, step
