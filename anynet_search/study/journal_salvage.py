"""Damaged journal lines taken apart record by record: every readable record kept, the lost ones named.

A journal line that is not a record (a torn write glued onto the next record, garbage appended by hand, a
damaged disk block) stops Optuna's reader, and every record after it with it. `salvage` takes the lines from
the first damaged one to the end and returns what should stand in their place:

- a readable line is kept byte for byte;
- a damaged line is split where a record starts (`{"op_code":`); every piece that parses is kept (a record
  glued after a torn one), every piece that does not is a lost record, and text before the first record start
  is garbage that held no record;
- a lost record that created a trial (or a study) is replaced by a placeholder creation, since Optuna numbers
  trials by their creation records and every later trial would otherwise be read as its predecessor. The
  placeholder is a failed trial whose `failure` names the line; the records that updated the lost trial are
  kept in the file but not applied (a finished trial takes no updates), and the study's worker re-enqueues
  its slot, which then has no trained model and no ticket.

A lost record whose beginning is gone too short to show its kind (fewer than 12 bytes) counts as lost of
unknown kind: if it created a trial, the later trials' records would be misread, which no reader can tell.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

RECORD_PREFIX = b'{"op_code":'  # every Optuna journal record starts like this
CREATE_STUDY, CREATE_TRIAL = 0, 4  # optuna.storages.journal._storage.JournalOperation
FAIL = 3  # optuna.trial.TrialState.FAIL
OP_CODES = range(11)
PLACEHOLDER_WORKER = "anynet-search-salvage"
_OP = re.compile(rb'^\{"op_code":(\d+)[,}]')
_STUDY_ID = re.compile(rb'"study_id":(\d+)[,}]')
KINDS = {0: "a study's creation", 1: "a study's deletion", 2: "a study attribute", 3: "a study attribute",
         4: "a trial's creation", 5: "a trial parameter", 6: "a trial's state or value",
         7: "an intermediate value", 8: "a trial attribute", 9: "a trial attribute", 10: "a discard"}


def parse_record(line: bytes) -> dict | None:
    """The journal record a line holds (a JSON object with a known op_code), or None."""
    try:
        record = json.loads(line)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError
        return None
    if not isinstance(record, dict) or record.get("op_code") not in OP_CODES:
        return None
    return record


@dataclass
class Salvage:
    """What stands in for a damaged region of a journal, and what was lost in it."""

    lines: list[bytes] = field(default_factory=list)  # records to write in the region's place, each with "\n"
    damaged: list[int] = field(default_factory=list)  # 1-based line numbers of the damaged lines
    set_aside: bytes = b""  # the damaged lines, as they were
    readable: int = 0  # records kept: readable lines and records read back out of damaged lines
    recovered: int = 0  # records read back out of damaged lines
    lost: list[str] = field(default_factory=list)  # the kind of each record lost
    placeholders: int = 0  # lost creations replaced by a failed placeholder

    def summary(self) -> str:
        """'line 10 (…)' or 'lines 10, 12 and 3 more (…)': which lines, what was lost and what was kept."""
        shown = ", ".join(str(n) for n in self.damaged[:2])
        more = len(self.damaged) - 2
        where = f"line {shown}" if len(self.damaged) == 1 else (
            f"lines {shown}" + (f" and {more} more" if more > 0 else ""))
        lost = (f"{len(self.lost)} record{'s' if len(self.lost) != 1 else ''} lost ({', '.join(sorted(set(self.lost)))})"
                if self.lost else "no record lost")
        parts = [lost]
        if self.placeholders:
            parts.append(f"{self.placeholders} lost trial{'s' if self.placeholders != 1 else ''} recorded as failed, "
                         "so the worker trains the slot again")
        if self.recovered:
            parts.append(f"{self.recovered} record{'s' if self.recovered != 1 else ''} recovered from damaged lines")
        return f"{where} unreadable: {'; '.join(parts)}"


def _placeholder(study_id: int | None, op: int, line: int) -> bytes:
    now = datetime.now(timezone.utc).isoformat()
    if op == CREATE_STUDY:
        record = {"op_code": CREATE_STUDY, "worker_id": PLACEHOLDER_WORKER, "study_name": f"lost-study-line-{line}",
                  "directions": [1]}
    else:
        record = {"op_code": CREATE_TRIAL, "worker_id": PLACEHOLDER_WORKER, "study_id": study_id or 0,
                  "datetime_start": None, "datetime_complete": now, "state": FAIL, "value": None, "values": None,
                  "params": {}, "distributions": {}, "system_attrs": {}, "intermediate_values": {},
                  "user_attrs": {"failure": f"its creation record was lost to journal damage (line {line})"}}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _study_of_neighbour(lines: list[bytes | tuple[int, int | None]], at: int) -> int | None:
    """The study of the nearest trial creation after position `at` (else before it) among the salvaged lines."""
    order = list(range(at + 1, len(lines))) + list(range(at - 1, -1, -1))
    for i in order:
        item = lines[i]
        if isinstance(item, bytes):
            record = json.loads(item)
            if record["op_code"] == CREATE_TRIAL:
                return int(record["study_id"])
    return None


def salvage(data: bytes, first_line: int) -> Salvage:
    """Salvage the complete lines `data` (the region from the first damaged line on, numbered from `first_line`)."""
    out = Salvage()
    items: list[bytes | tuple[int, int | None]] = []  # kept lines, or (line, study) of a lost creation
    for number, line in enumerate(data.splitlines(keepends=True), start=first_line):
        if parse_record(line) is not None:
            items.append(line)
            out.readable += 1
            continue
        out.damaged.append(number)
        out.set_aside += line
        body = line.rstrip(b"\r\n")
        starts = [m.start() for m in re.finditer(re.escape(RECORD_PREFIX), body)]
        for i, start in enumerate(starts):
            piece = body[start:starts[i + 1] if i + 1 < len(starts) else len(body)]
            if parse_record(piece) is not None:
                items.append(piece + b"\n")
                out.recovered += 1
                out.readable += 1
                continue
            op = _OP.match(piece)
            code = int(op.group(1)) if op else None
            out.lost.append(KINDS.get(code, "of unknown kind") if code is not None else "of unknown kind")
            if code in (CREATE_STUDY, CREATE_TRIAL):
                study = _STUDY_ID.search(piece)
                items.append((number, int(study.group(1)) if study else None) if code == CREATE_TRIAL
                             else _placeholder(None, CREATE_STUDY, number))
                out.placeholders += code == CREATE_TRIAL
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            line, study = item
            items[i] = _placeholder(study if study is not None else _study_of_neighbour(items, i), CREATE_TRIAL, line)
    out.lines = [item for item in items if isinstance(item, bytes)]
    return out
