"""``echolab doctor``: check a real lab before a long, unattended run.

Each check says what it found and, when it fails, how to fix it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from echolab.captures.reader import ReadStats, read_packets
from echolab.collector.recorder import CaptureProcess, CaptureToolError
from echolab.errors import EcholabError
from echolab.labdir import LabDir

#: Expected size of one capture (bytes), for the disk check: spoken answers
#: are tens of kB, music samples about a megabyte.
TYPICAL_CAPTURE_BYTES = {"music": 1_500_000, "*": 200_000}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # shown, but does not fail the doctor


def check_capture_tool(tool: str = "dumpcap") -> Check:
    path = shutil.which(tool)
    if path is None:
        return Check("capture tool", False, f"{tool} not found",
                     "install Wireshark's command-line tools: apt-get install tshark")
    return Check("capture tool", True, f"{tool} at {path}")


def check_capture_permission(interface: str, tool: str = "dumpcap", prefix: tuple[str, ...] = (),
                             tmp_dir: Path | None = None) -> Check:
    """Start a real capture on *interface* for a moment."""
    tmp = (tmp_dir or Path("/tmp")) / f"doctor-{time.time_ns()}.pcapng"
    try:
        cap = CaptureProcess.start(tmp, interface, "tcp", prefix=prefix, tool=tool, timeout_s=10)
        cap.stop()
    except CaptureToolError as exc:
        fix = str(exc).split(": ", 1)[-1] if "group" in str(exc) else "pass the gateway interface with --interface"
        return Check("capture permission", False, str(exc), fix)
    finally:
        tmp.unlink(missing_ok=True)
    return Check("capture permission", True, f"{tool} can capture on {interface}")


def check_device_seen(interface: str, device_ip: str, listen_s: float = 10.0, tool: str = "dumpcap",
                      prefix: tuple[str, ...] = (), tmp_dir: Path | None = None) -> Check:
    """Listen on the interface and count the Echo's packets."""
    return check_device_traffic(interface, device_ip, listen_s, tool, prefix, tmp_dir)[0]


def check_device_traffic(interface: str, device_ip: str, listen_s: float = 10.0, tool: str = "dumpcap",
                         prefix: tuple[str, ...] = (), tmp_dir: Path | None = None) -> list[Check]:
    """Listen on the interface: is the Echo there, and what do its keep-alives and pauses look like?

    The second check is :func:`echolab.collector.timing.measure` on what was
    heard: the keep-alive level and the idle window the collector would use.
    """
    from echolab.collector.timing import measure

    tmp = (tmp_dir or Path("/tmp")) / f"doctor-seen-{time.time_ns()}.pcapng"
    try:
        cap = CaptureProcess.start(tmp, interface, f"host {device_ip}", prefix=prefix, tool=tool, timeout_s=10)
        time.sleep(listen_s)
        cap.stop()
        packets = sum(1 for _ in read_packets(tmp, ReadStats()))
        measured = measure(tmp, device_ip) if packets else None
    except (CaptureToolError, EcholabError) as exc:
        return [Check("Echo seen", False, str(exc), "fix the capture checks above first")]
    finally:
        tmp.unlink(missing_ok=True)
    if packets == 0 or measured is None:
        return [Check("Echo seen", False, f"no packet to or from {device_ip} on {interface} in {listen_s:g} s",
                      "check --device-ip (the Echo's address in the Alexa app or the router's DHCP leases) and "
                      "that the Echo's traffic crosses this interface; saying 'Alexa, what time is it?' makes "
                      "traffic")]
    timing = Check("Echo timing", True, measured.describe())
    if not measured.keepalives:
        timing = Check("Echo timing", True, measured.describe(), "listen longer (--listen 60): a real Echo sends "
                       "keep-alives every 20 to 30 s", warning=True)
    return [Check("Echo seen", True, f"{packets} packets of {device_ip} in {listen_s:g} s"), timing]


def check_audio_output(device: int | str | None = None) -> Check:
    from echolab.collector.audio import AudioOutputError, SounddeviceOutput

    try:
        out = SounddeviceOutput(device)
    except AudioOutputError as exc:
        return Check("audio output", False, str(exc),
                     "connect a speaker next to the Echo; list devices with 'echolab collect --list-audio-devices' "
                     "and pass --audio-device")
    return Check("audio output", True, f"plays on {out.device_name}")


def check_volume() -> Check:
    """The ALSA master volume, when amixer can tell (a muted speaker fails every request)."""
    if shutil.which("amixer") is None:
        return Check("volume", True, "amixer not installed: check the speaker's volume by hand",
                     "apt-get install alsa-utils to let the doctor read it", warning=True)
    out = subprocess.run(["amixer", "get", "Master"], capture_output=True, text=True)
    if out.returncode != 0:
        return Check("volume", True, "no ALSA Master control: check the speaker's volume by hand", warning=True)
    if "[off]" in out.stdout:
        return Check("volume", False, "the Master output is muted", "unmute it: amixer set Master unmute")
    levels = [int(x) for x in re.findall(r"\[(\d+)%\]", out.stdout)]
    level = max(levels) if levels else None
    if level is not None and level < 40:
        return Check("volume", False, f"Master volume at {level}%", "raise it: amixer set Master 80%")
    return Check("volume", True, f"Master volume at {level}%")


def check_speech(lab: LabDir, engine: str = "espeak") -> Check:
    from echolab.prompts.synth import engine_for_lab

    try:
        eng = engine_for_lab(lab, engine)
        samples, rate = eng.synthesize("Alexa, what time is it?")
    except EcholabError as exc:
        return Check("speech engine", False, str(exc),
                     "use --engine espeak (offline) or synthesize everything first with 'echolab prompts synth'")
    return Check("speech engine", True, f"{engine} ({eng.voice}) speaks: {len(samples) / rate:.1f} s of audio")


def expected_bytes(classes: list[str], per_class: int) -> int:
    return sum(per_class * TYPICAL_CAPTURE_BYTES.get(c, TYPICAL_CAPTURE_BYTES["*"]) for c in classes)


def check_disk(lab: LabDir, classes: list[str], per_class: int) -> Check:
    need = int(expected_bytes(classes, per_class) * 1.5)
    free = shutil.disk_usage(lab.root).free
    detail = f"{free / 1e9:.1f} GB free, the campaign needs about {need / 1e9:.2f} GB"
    if free < need:
        return Check("free disk", False, detail, f"free space on {lab.root} or use another --lab")
    return Check("free disk", True, detail)


def run_doctor(
    lab: LabDir,
    *,
    interface: str | None,
    device_ip: str | None,
    audio_device: int | str | None = None,
    engine: str = "espeak",
    classes: list[str],
    per_class: int,
    tool: str = "dumpcap",
    listen_s: float = 10.0,
    prefix: tuple[str, ...] = (),
) -> list[Check]:
    checks = [check_capture_tool(tool)]
    if interface is None:
        checks.append(Check("capture permission", False, "no interface given", "pass --interface (see 'ip link')"))
    elif checks[0].ok:
        checks.append(check_capture_permission(interface, tool, prefix, lab.tmp_dir))
        if checks[-1].ok:
            if device_ip is None:
                checks.append(Check("Echo seen", False, "no device address given", "pass --device-ip"))
            else:
                checks += check_device_traffic(interface, device_ip, listen_s, tool, prefix, lab.tmp_dir)
    checks += [check_audio_output(audio_device), check_volume(), check_speech(lab, engine),
               check_disk(lab, classes, per_class)]
    return checks
