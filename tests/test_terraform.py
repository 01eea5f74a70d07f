"""Tests of the Terraform under deploy/terraform.

- ``terraform fmt -check`` over the whole tree.
- ``terraform test`` in modules/topology: plan-only, provider-free, offline.
- ``terraform test`` in the cloud modules and the AWS example with mocked
  providers. Mocks make no AWS call but need the hashicorp/aws provider
  binary. These tests run only when a local filesystem mirror contains it
  (``AMA_TF_PLUGIN_MIRROR``, default /opt/tf-plugins), and skip otherwise.
- The topology plan with ``node_domain`` set, read by ``ama.plan.View`` and
  rendered by ``ama.natsconf``: every address is a node's DNS name.
- Static checks of every module's files, variables, outputs and providers.
- The cloud templates rendered by Terraform: the NATS configuration checked
  by ``nats-server -t`` and the boot script by ``bash -n``.
- End to end: the local example's plan rendered by ``terraform apply`` and
  started with ``ama up --plan``, then a question asked in one region and
  seen in the others.

Terraform always runs in a temporary copy of deploy/terraform with its CLI
configuration in the temporary directory, so no ``.terraform`` directory,
lock file or state is left in the repository.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from ama import natsconf, plan as plans, subjects
from ama.client import AmaClient
from tests.harness import ClusterApi, UpProcess

TERRAFORM = shutil.which("terraform")
pytestmark = pytest.mark.skipif(
    TERRAFORM is None,
    reason="terraform is not on the PATH; install Terraform 1.9 or newer to run the Terraform tests",
)

REPO = Path(__file__).resolve().parent.parent
TERRAFORM_TREE = REPO / "deploy" / "terraform"
MODULES = TERRAFORM_TREE / "modules"
EXAMPLES = TERRAFORM_TREE / "examples"
CLOUD_MODULES = ["aws-region", "aws-core", "aws-global-dns"]
STANDARD_FILES = ["main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"]
PLUGIN_MIRROR = Path(os.environ.get("AMA_TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
AWS_PROVIDER_DIR = PLUGIN_MIRROR / "registry.terraform.io" / "hashicorp" / "aws"

COMMAND_TIMEOUT_S = 120
WAIT_S = 10.0
# ports_per_region (100) times three regions, plus the core's block.
LOCAL_EXAMPLE_PORT_SPAN = 400
BASE_PORT_ATTEMPTS = 20


# ---------------------------------------------------------------------------
# Running terraform
# ---------------------------------------------------------------------------


def terraform_env(cli_config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    })
    return env


def run_terraform(args: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """Run terraform with ``args`` in ``cwd``. With ``check``, a non-zero exit fails the test and shows the output."""
    result = subprocess.run(
        [TERRAFORM, *args[:1], "-no-color", *args[1:]],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
    )
    if check and result.returncode != 0:
        pytest.fail(f"terraform {' '.join(args)} in {cwd} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def copy_tree(destination: Path) -> Path:
    """Copy deploy/terraform without working files and return the copy."""
    ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.*")
    shutil.copytree(TERRAFORM_TREE, destination, ignore=ignore)
    return destination


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory) -> dict[str, str]:
    """Environment whose CLI configuration allows no provider source at all."""
    config = tmp_path_factory.mktemp("terraform-cli") / "offline.tfrc"
    config.write_text("")
    return terraform_env(config)


@pytest.fixture(scope="module")
def mirror_env(tmp_path_factory) -> dict[str, str]:
    """Environment that installs hashicorp providers only from PLUGIN_MIRROR."""
    if not any(AWS_PROVIDER_DIR.glob("*/*/terraform-provider-aws*")):
        pytest.skip(f"no hashicorp/aws provider in {PLUGIN_MIRROR}; set AMA_TF_PLUGIN_MIRROR to a filesystem mirror that holds one")
    config = tmp_path_factory.mktemp("terraform-cli") / "mirror.tfrc"
    config.write_text(textwrap.dedent(f"""\
        provider_installation {{
          filesystem_mirror {{
            path    = {json.dumps(str(PLUGIN_MIRROR))}
            include = ["registry.terraform.io/hashicorp/*"]
          }}
        }}
    """))
    return terraform_env(config)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    return copy_tree(tmp_path_factory.mktemp("terraform") / "terraform")


@pytest.fixture(scope="module")
def topology_dir(tree_copy, offline_env) -> Path:
    """The copied topology module, initialized."""
    directory = tree_copy / "modules" / "topology"
    run_terraform(["init", "-backend=false"], directory, offline_env)
    return directory


# ---------------------------------------------------------------------------
# Formatting and terraform test
# ---------------------------------------------------------------------------


def test_fmt_check_whole_tree(offline_env):
    result = run_terraform(["fmt", "-check", "-recursive", "-diff", str(TERRAFORM_TREE)], REPO, offline_env, check=False)
    assert result.returncode == 0, f"run 'terraform fmt -recursive deploy/terraform':\n{result.stdout}{result.stderr}"


def test_topology_terraform_test_offline(topology_dir, offline_env):
    result = run_terraform(["test"], topology_dir, offline_env)
    assert re.search(r"Success! \d+ passed, 0 failed", result.stdout), result.stdout


@pytest.mark.parametrize("directory", [
    "modules/aws-region",
    "modules/aws-core",
    "modules/aws-global-dns",
    "examples/aws-three-regions",
])
def test_cloud_terraform_test_with_mocks(directory, tmp_path, mirror_env):
    root = copy_tree(tmp_path / "terraform") / directory
    run_terraform(["init", "-backend=false"], root, mirror_env)

    result = run_terraform(["test"], root, mirror_env)

    assert re.search(r"Success! \d+ passed, 0 failed", result.stdout), result.stdout


def test_aws_example_validates(tmp_path, mirror_env):
    root = copy_tree(tmp_path / "terraform") / "examples" / "aws-three-regions"
    run_terraform(["init", "-backend=false"], root, mirror_env)

    result = run_terraform(["validate"], root, mirror_env)

    assert "The configuration is valid" in result.stdout


@pytest.mark.parametrize(("variables", "expected"), [
    (
        ['regions=[{name="a",latitude=0,longitude=0},{name="b",latitude=1,longitude=1}]', "core_region=a"],
        "regions: at least three regions are required",
    ),
    (
        ['regions=[{name="a.b",latitude=0,longitude=0},{name="b",latitude=1,longitude=1},{name="c",latitude=2,longitude=2}]', "core_region=b"],
        'regions[].name: use 1 to 64 letters, digits, \'-\' or \'_\' so that the name is a valid NATS subject token; invalid: "a.b"',
    ),
    (
        ['regions=[{name="a",latitude=95,longitude=0},{name="b",latitude=1,longitude=1},{name="c",latitude=2,longitude=2}]', "core_region=a"],
        "regions[].latitude must be between -90 and 90 degrees; invalid: a (95)",
    ),
    (
        ['regions=[{name="a",latitude=0,longitude=0,nats_servers=4},{name="b",latitude=1,longitude=1},{name="c",latitude=2,longitude=2}]', "core_region=a"],
        "invalid: a (4)",
    ),
    (
        ['regions=[{name="a",latitude=0,longitude=0},{name="b",latitude=1,longitude=1},{name="c",latitude=2,longitude=2}]', "core_region=z"],
        'core_region "z" must be the name of one of the regions: a, b, c',
    ),
    (
        ['regions=[{name="a",latitude=0,longitude=0},{name="b",latitude=1,longitude=1},{name="c",latitude=2,longitude=2}]', "core_region=a", "base_port=4000"],
        "which includes 4222",
    ),
])
def test_topology_validation_message_names_field(topology_dir, offline_env, variables, expected):
    args = ["plan", "-input=false", "-lock=false"]
    for variable in variables:
        args += ["-var", variable]

    result = run_terraform(args, topology_dir, offline_env, check=False)

    assert result.returncode != 0, result.stdout
    # Terraform wraps error messages at 80 columns.
    message = " ".join(result.stderr.split())
    assert expected in message, message


# ---------------------------------------------------------------------------
# Static checks of the HCL
# ---------------------------------------------------------------------------


def blank_strings_and_comments(text: str) -> str:
    """Return ``text`` with comments and heredoc bodies blanked, and brackets inside strings blanked.

    Newlines and the other characters of quoted strings are kept, so block
    labels stay readable and bracket counting finds only code brackets.
    """
    out = list(text)
    i = 0
    modes: list[list] = []  # each entry: ["string"] or ["template", depth]
    while i < len(text):
        char = text[i]
        mode = modes[-1][0] if modes else "code"
        if modes and char in "[]()":
            out[i] = " "
        if mode == "string":
            if char == "\\":
                i += 2
                continue
            if char in "$%" and text[i + 1:i + 2] == "{":
                out[i + 1] = " "
                modes.append(["template", 1])
                i += 2
                continue
            if char == '"':
                modes.pop()
            elif char in "{}":
                out[i] = " "
            i += 1
            continue
        inside_template = mode == "template"
        if char == '"':
            modes.append(["string"])
        elif char == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end == -1 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        elif text.startswith("/*", i):
            end = text.index("*/", i) + 2
            out[i:end] = [c if c == "\n" else " " for c in text[i:end]]
            i = end
            continue
        elif text.startswith("<<", i) and not inside_template:
            match = re.match(r"<<-?([A-Za-z_]+)\n", text[i:])
            if match:
                terminator = re.compile(rf"^\s*{match.group(1)}\s*$", re.MULTILINE)
                body_start = i + match.end()
                end_match = terminator.search(text, body_start)
                end = end_match.end()
                out[body_start:end_match.start()] = [c if c == "\n" else " " for c in text[body_start:end_match.start()]]
                i = end
                continue
        elif inside_template and char in "{}":
            out[i] = " "
            modes[-1][1] += 1 if char == "{" else -1
            if modes[-1][1] == 0:
                modes.pop()
        i += 1
    return "".join(out)


def hcl_blocks(path: Path) -> list[tuple[str, list[str], str]]:
    """Return the top-level blocks of a .tf file as (type, labels, body)."""
    text = blank_strings_and_comments(path.read_text())
    blocks = []
    for match in re.finditer(r'^([a-z_]+)((?:\s+"[^"\n]*")*)\s*\{', text, re.MULTILINE):
        depth, index = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        if any(start < match.start() < end for _, _, _, start, end in blocks):
            continue
        labels = re.findall(r'"([^"]*)"', match.group(2))
        blocks.append((match.group(1), labels, text[match.end():index - 1], match.start(), index))
    return [(kind, labels, body) for kind, labels, body, _, _ in blocks]


def top_level_attributes(body: str) -> set[str]:
    """Return the attribute names set directly in a block body, not in nested blocks."""
    names, depth = set(), 0
    for line in body.splitlines():
        if depth == 0:
            match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=", line)
            if match:
                names.add(match.group(1))
        depth += sum(line.count(opening) - line.count(closing) for opening, closing in ("{}", "[]", "()"))
    return names


def terraform_dirs() -> list[Path]:
    return sorted([*MODULES.iterdir(), *EXAMPLES.iterdir()])


def tf_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.tf"))


def test_block_parser_reads_nested_strings(tmp_path):
    sample = tmp_path / "sample.tf"
    sample.write_text(textwrap.dedent('''\
        variable "a" {
          description = "text with { and ${join(", ", ["}"])} inside" # comment {
          type        = string
          validation {
            condition     = true
            error_message = <<-EOT
              description = not an attribute }
            EOT
          }
        }
        output "b" {
          value = [
            { description = "(" },
          ]
        }
    '''))

    blocks = hcl_blocks(sample)

    assert [(kind, labels) for kind, labels, _ in blocks] == [("variable", ["a"]), ("output", ["b"])]
    assert top_level_attributes(blocks[0][2]) == {"description", "type"}
    assert top_level_attributes(blocks[1][2]) == {"value"}


@pytest.mark.parametrize("directory", terraform_dirs(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_standard_files_present(directory):
    missing = [name for name in STANDARD_FILES if not (directory / name).is_file()]
    assert missing == [], f"{directory.relative_to(REPO)} lacks {missing}"


@pytest.mark.parametrize("directory", terraform_dirs(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_variables_have_description_and_type(directory):
    variables = [(path, labels[0], body) for path in tf_files(directory) for kind, labels, body in hcl_blocks(path) if kind == "variable"]
    assert variables, f"{directory.relative_to(REPO)} declares no variable"
    for path, name, body in variables:
        attributes = top_level_attributes(body)
        assert "description" in attributes, f"variable {name} in {path.relative_to(REPO)} has no description"
        assert "type" in attributes, f"variable {name} in {path.relative_to(REPO)} has no type"


@pytest.mark.parametrize("directory", terraform_dirs(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_outputs_have_description(directory):
    outputs = [(path, labels[0], body) for path in tf_files(directory) for kind, labels, body in hcl_blocks(path) if kind == "output"]
    assert outputs, f"{directory.relative_to(REPO)} declares no output"
    for path, name, body in outputs:
        assert "description" in top_level_attributes(body), f"output {name} in {path.relative_to(REPO)} has no description"


def test_modules_configure_no_provider():
    for path in MODULES.rglob("*.tf"):
        kinds = [kind for kind, _, _ in hcl_blocks(path)]
        assert "provider" not in kinds, f"{path.relative_to(REPO)} configures a provider; pass providers in from the root instead"


def test_modules_use_for_each_not_count():
    for path in MODULES.rglob("*.tf"):
        text = blank_strings_and_comments(path.read_text())
        assert "count.index" not in text, f"{path.relative_to(REPO)} uses count.index; key resources by name with for_each"
        for kind, labels, body in hcl_blocks(path):
            if kind in ("resource", "data", "module"):
                assert "count" not in top_level_attributes(body), f"{kind} {'.'.join(labels)} in {path.relative_to(REPO)} uses count; use for_each keyed by name"


@pytest.mark.parametrize("module", CLOUD_MODULES)
def test_cloud_module_declares_aws_and_aliases(module):
    versions = (MODULES / module / "versions.tf").read_text()
    assert re.search(r'source\s*=\s*"hashicorp/aws"', versions), f"{module}/versions.tf must require hashicorp/aws"
    text = "\n".join(path.read_text() for path in tf_files(MODULES / module))
    used_aliases = set(re.findall(r"provider\s*=\s*aws\.([a-z_]+)", text))
    declared = set(re.findall(r"aws\.([a-z_]+)", "".join(re.findall(r"configuration_aliases\s*=\s*\[([^\]]*)\]", versions))))
    assert used_aliases <= declared, f"{module} uses aws.{used_aliases - declared} without declaring it in configuration_aliases"


@pytest.mark.parametrize("module", CLOUD_MODULES)
def test_cloud_for_each_not_over_range(module):
    # Resources per region, node or record are keyed by name, because keys
    # from a range would shift when an element is removed.
    for path in tf_files(MODULES / module):
        for match in re.finditer(r"for_each\s*=\s*(.+)", blank_strings_and_comments(path.read_text())):
            expression = match.group(1)
            assert "range(" not in expression, f"{path.relative_to(REPO)}: for_each over a range is keyed by index: {expression}"


def test_bootstrap_templates_identical():
    region = (MODULES / "aws-region" / "templates" / "bootstrap.sh.tftpl").read_text()
    core = (MODULES / "aws-core" / "templates" / "bootstrap.sh.tftpl").read_text()
    assert region == core, "the boot scripts of aws-region and aws-core must stay the same file"


# ---------------------------------------------------------------------------
# Templates rendered by Terraform
# ---------------------------------------------------------------------------


def render_template(path: Path, variables: str, workdir: Path, env: dict[str, str]) -> str:
    """Render a template file with ``terraform console``; ``variables`` is an HCL object."""
    workdir.mkdir(parents=True, exist_ok=True)
    expression = f"jsonencode(templatefile({json.dumps(str(path))}, {variables}))"
    result = subprocess.run(
        [TERRAFORM, "console"], cwd=workdir, env=env, input=expression + "\n",
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


def test_nats_conf_template_passes_check(tmp_path, offline_env):
    # The host names need not resolve: nats-server -t only parses.
    variables = textwrap.dedent("""\
        {
          server_name = "us-east-nats-1", cluster_name = "us-east", address = "us-east-nats-1.ama.internal",
          client_port = 20100, cluster_port = 20101, gateway_port = 20102, monitor_port = 20103,
          store_dir = "/var/lib/ama/nats", max_file_byte = 1073741824,
          routes = ["nats-route://us-east-nats-1.ama.internal:20101", "nats-route://us-east-nats-2.ama.internal:20105"],
          gateways = [{ name = "eu-central", urls = ["nats://eu-central-nats-1.ama.internal:20202"] }],
        }
    """).replace("\n", " ")
    rendered = render_template(MODULES / "aws-region" / "templates" / "nats-server.conf.tftpl", variables, tmp_path / "console", offline_env)
    config = tmp_path / "nats-server.conf"
    config.write_text(rendered)

    result = subprocess.run([natsconf.find_binary(), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{rendered}"
    assert '"nats-route://us-east-nats-2.ama.internal:20105"' in rendered


def test_bootstrap_template_parses(tmp_path, offline_env):
    variables = '{ parameter_name = "/ama/us-east/nodes/us-east-edges", aws_region = "us-east-1", venv_path = "/opt/ama" }'
    rendered = render_template(MODULES / "aws-region" / "templates" / "bootstrap.sh.tftpl", variables, tmp_path / "console", offline_env)
    script = tmp_path / "bootstrap.sh"
    script.write_text(rendered)

    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr

    python_source = rendered.split("<<'PYTHON'\n", 1)[1].split("\nPYTHON\n", 1)[0]
    compile(python_source, "bootstrap-python", "exec")
    assert "--name '/ama/us-east/nodes/us-east-edges'" in rendered
    assert "'/opt/ama/bin/python' - \"$instance_id\" '/opt/ama'" in rendered


# ---------------------------------------------------------------------------
# End to end: the local example's plan started with ama up
# ---------------------------------------------------------------------------


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_base_port() -> int:
    """Return a base port whose LOCAL_EXAMPLE_PORT_SPAN ports are free, below Linux's ephemeral range."""
    for _ in range(BASE_PORT_ATTEMPTS):
        base = random.randrange(20000, 32000 - LOCAL_EXAMPLE_PORT_SPAN, 100)
        if all(port_free(port) for port in range(base, base + LOCAL_EXAMPLE_PORT_SPAN)):
            return base
    pytest.fail(f"found no {LOCAL_EXAMPLE_PORT_SPAN} free consecutive ports in {BASE_PORT_ATTEMPTS} attempts")


def render_local_plan(tmp_path: Path, env: dict[str, str], base_port: int) -> dict:
    root = copy_tree(tmp_path / "terraform") / "examples" / "local"
    run_terraform(["init", "-backend=false"], root, env)
    run_terraform(["apply", "-auto-approve", "-input=false", "-var", f"base_port={base_port}"], root, env)
    output = run_terraform(["output", "-json", "plan"], root, env)
    return json.loads(json.loads(output.stdout))


def test_local_plan_matches_ama_rules(tmp_path, offline_env):
    plan = render_local_plan(tmp_path, offline_env, 24000)

    plans.validate(plan)
    assert plan["core"] == {"name": "core-1", "http_port": 24000}
    ports = plans.View(plan).all_ports()
    assert len(ports) == len(set(ports)) == 22
    assert 4222 not in ports
    for region in plan["regions"]:
        for edge in region["edges"]:
            assert edge["home_regions"] == plans.home_order(tuple(edge["location"]), plan["regions"]), edge["name"]


def test_jetstream_stream_names_match_subjects(topology_dir, offline_env):
    result = run_terraform(
        ["plan", "-input=false", "-lock=false", "-out=jetstream.tfplan",
         "-var", 'regions=[{name="us-east",latitude=39.04,longitude=-77.49},{name="eu-central",latitude=50.11,longitude=8.68},{name="ap_south",latitude=19.08,longitude=72.88}]',
         "-var", "core_region=us-east"],
        topology_dir, offline_env,
    )
    assert "Changes to Outputs" in result.stdout
    shown = run_terraform(["show", "-json", "jetstream.tfplan"], topology_dir, offline_env)
    (topology_dir / "jetstream.tfplan").unlink()
    placement = json.loads(shown.stdout)["planned_values"]["outputs"]["jetstream_placement"]["value"]

    for region, stream in placement["streams"].items():
        assert stream["stream"] == subjects.stream(region), region
        assert stream["subjects"] == [subjects.updates_of_region(region)], region


def planned_topology_outputs(topology_dir: Path, env: dict[str, str], name: str, variables: list[str]) -> dict:
    """Plan the copied topology module with ``-var`` arguments and return its planned output values."""
    plan_file = f"{name}.tfplan"
    args = ["plan", "-input=false", "-lock=false", f"-out={plan_file}"]
    for variable in variables:
        args += ["-var", variable]
    run_terraform(args, topology_dir, env)
    shown = run_terraform(["show", "-json", plan_file], topology_dir, env)
    (topology_dir / plan_file).unlink()
    outputs = json.loads(shown.stdout)["planned_values"]["outputs"]
    return {key: output["value"] for key, output in outputs.items()}


def test_node_domain_plan_names_hosts_for_ama(topology_dir, offline_env):
    outputs = planned_topology_outputs(topology_dir, offline_env, "node-domain", [
        'regions=[{name="us-east",latitude=39.04,longitude=-77.49},{name="eu-central",latitude=50.11,longitude=8.68},{name="ap-southeast",latitude=1.35,longitude=103.82}]',
        "core_region=us-east",
        "node_domain=ama.internal",
    ])
    plan = json.loads(outputs["plan"])
    plans.validate(plan)
    view = plans.View(plan)
    server = view.region("eu-central")["nats"][1]

    assert plan["bind"] == "0.0.0.0"
    assert view.nats_urls("eu-central") == [f"nats://eu-central-nats-{i}.ama.internal:{20200 + 4 * (i - 1)}" for i in (1, 2, 3)]
    assert view.core_url() == "http://core-1.ama.internal:20000"
    assert view.bind_host(server) == "0.0.0.0"
    assert outputs["nodes"]["eu-central-nats-2"]["routes"] == [f"nats-route://eu-central-nats-{i}.ama.internal:{20201 + 4 * (i - 1)}" for i in (1, 2, 3)]
    assert outputs["nodes"]["us-east-edge-1"]["nats_urls"] == view.nats_urls_in_order(view.region("us-east")["edges"][0]["home_regions"])

    config = natsconf.render(view, "eu-central", server, Path("/var/lib/ama/nats"))
    assert 'listen: "0.0.0.0:20204"' in config
    assert 'advertise: "eu-central-nats-2.ama.internal:20205"' in config
    assert 'client_advertise: "eu-central-nats-2.ama.internal:20204"' in config
    assert 'routes: ["nats-route://eu-central-nats-1.ama.internal:20201", "nats-route://eu-central-nats-2.ama.internal:20205", "nats-route://eu-central-nats-3.ama.internal:20209"]' in config
    assert '"nats://us-east-nats-1.ama.internal:20102"' in config
    assert "127.0.0.1" not in config


def test_node_domain_unset_keeps_shared_host(topology_dir, offline_env):
    outputs = planned_topology_outputs(topology_dir, offline_env, "shared-host", [
        'regions=[{name="us-east",latitude=39.04,longitude=-77.49},{name="eu-central",latitude=50.11,longitude=8.68},{name="ap-southeast",latitude=1.35,longitude=103.82}]',
        "core_region=us-east",
        "host=10.0.0.5",
    ])
    plan = json.loads(outputs["plan"])
    view = plans.View(plan)

    assert "bind" not in plan
    assert "host" not in plan["core"]
    assert view.nats_urls("us-east") == ["nats://10.0.0.5:20100", "nats://10.0.0.5:20104", "nats://10.0.0.5:20108"]
    assert outputs["nodes"]["us-east-nats-1"]["host"] == "10.0.0.5"


@pytest.mark.cluster
async def test_local_plan_runs_with_ama_up(tmp_path, offline_env):
    plan = render_local_plan(tmp_path, offline_env, free_base_port())
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan, indent=2))
    process = UpProcess(tmp_path / "data", ["--plan", str(plan_file)])
    clients: list[AmaClient] = []
    try:
        cluster = ClusterApi(process.start())
        assert cluster.core == f"http://127.0.0.1:{plan['core']['http_port']}"
        assert cluster.regions() == ["us-east", "eu-central", "ap-southeast"]

        room = cluster.create_room("Terraform plan")
        for region in cluster.regions():
            joined = cluster.join(room, f"user-{region}")
            client = AmaClient(cluster.edge(region), joined["token"])
            await client.connect()
            clients.append(client)
        question = await clients[0].ask("Does a Terraform plan run?")

        for client in clients[1:]:
            await client.wait_for(lambda state: question in state.questions, WAIT_S)
            assert client.state.questions[question]["text"] == "Does a Terraform plan run?"
        await clients[0].wait_for(lambda state: "committed" in state.acks.get(question, set()), WAIT_S)
    finally:
        for client in clients:
            await client.close()
        process.stop()
