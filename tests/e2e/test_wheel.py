"""A wheel built from this checkout runs anywhere: installed into a fresh
venv outside the checkout, `taskscope agent` compiles the probes from the
BPF sources it carries as package data and brings every probe up."""

import os
import subprocess
import sys

from tests.e2e.agent_process import REPO, Agent

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def test_wheel_installed_elsewhere_runs_the_agent(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), REPO],
                   check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("taskscope-*.whl")
    venv = tmp_path / "venv"
    # bcc comes from Debian's python3-bpfcc, as on a user's machine.
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    str(wheel)], check=True, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import taskscope.agent.kernel.loader as l; print(l.BPF_DIR / l.ENTRY)"],
        check=True, cwd="/", env=env, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(venv)) and os.path.isfile(where), where

    agent = Agent(log_path=tmp_path / "agent.log", program=[str(venv / "bin" / "taskscope")],
                  cwd="/")
    try:
        samples = agent.scrape()
    finally:
        code, _ = agent.stop()
    assert code == 0, agent.log()
    up = {dict(labels)["probe"]: v for (name, labels), v in samples.items()
          if name == "taskscope_probe_up"}
    assert up and all(up.values()), up
