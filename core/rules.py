"""The policy as data: rules, limits and the version that names them. Pure: no I/O but loading.

A rule says: on a signal of one of these types, when every check over the facts holds (the
signal's numbers, the workspace's windows and health, see core/facts.py), ask for an action
at a priority, unless the same action was asked for this workspace within the cooldown. A
policy file (TOML) holds the rules and the limits; its version is a hash of the validated
content, so reformatting a file keeps the version and changing any rule or limit changes it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from functools import cache, cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from core.playbooks import Name, Playbook
from core.schedules import (
    SWEEP_PREFIX,
    TIMER_PREFIX,
    Schedule,
    Timer,
    Timing,
    timer_schedule,
)
from topics.commands import Action, Priority
from topics.errors import AutopilotError
from topics.signals import SignalType

SEED_POLICY_FILE = Path(__file__).with_name("seed_policy.toml")

Operator = Literal["<", "<=", ">", ">=", "==", "!="]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]

_SIGNAL_TYPES = "|".join(t.value for t in SignalType)
# What a rule runs on: a signal type, a schedule's sweep or a timer (core/schedules.py).
_TRIGGER_PATTERN = rf"^(?:{_SIGNAL_TYPES}|(?:sweep|timer):[a-z][a-z0-9_-]{{0,31}})$"
Trigger = Annotated[str, StringConstraints(pattern=_TRIGGER_PATTERN)]
# The facts a check may read; anything else is a typo, refused when the policy is loaded.
FACT_PATTERN = re.compile(
    rf"^(?:signal\.type|signal\.[a-z][a-z0-9_]{{0,63}}|(?:minute|hour)\.(?:{_SIGNAL_TYPES})"
    r"|queue\.pending|queue\.oldest_pending_age_seconds|health\.score|health\.status)$"
)


TEXT_FACTS = frozenset({"signal.type", "health.status"})


# Sections added after policies were first versioned (see Policy).
_LATER_FIELDS = ("schedules", "timers", "timing", "parking", "playbooks")


class PolicyError(AutopilotError):
    """A policy file that cannot be used; the message names the file and what to fix."""


def lane_of(priority: int) -> Priority:
    """The command lane of a rule priority: 10 critical, 8-9 high, 5-7 medium, 1-4 low."""
    if priority >= 10:
        return Priority.CRITICAL
    if priority >= 8:
        return Priority.HIGH
    if priority >= 5:
        return Priority.MEDIUM
    return Priority.LOW


class Check(BaseModel):
    """One comparison of a fact with a constant; a missing fact never satisfies a check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fact: str = Field(pattern=FACT_PATTERN.pattern)
    op: Operator
    # Strict: `true` is not a number, and "50" is not 50.
    value: StrictInt | StrictFloat | StrictStr

    @model_validator(mode="after")
    def _value_fits_the_fact(self) -> Check:
        # A check that can never hold (a number against text) is a mistake in the file.
        if self.fact in TEXT_FACTS:
            if not isinstance(self.value, str) or self.op not in {"==", "!="}:
                raise ValueError(f"{self.fact} is text: compare it with == or != and a string")
        elif isinstance(self.value, str):
            raise ValueError(f"{self.fact} is a number: compare it with a number")
        return self

    def holds(self, facts: Mapping[str, Any]) -> bool:
        """Whether the fact compares true; counts default to 0, other facts to missing."""
        actual: Any = facts.get(self.fact)
        if actual is None:
            if not self.fact.startswith(("minute.", "hour.")):
                return False
            actual = 0
        expected: Any = self.value
        if isinstance(actual, str) != isinstance(expected, str):
            return False
        op = self.op
        if op == "==":
            return bool(actual == expected)
        if op == "!=":
            return bool(actual != expected)
        if op == "<":
            return bool(actual < expected)
        if op == "<=":
            return bool(actual <= expected)
        if op == ">":
            return bool(actual > expected)
        return bool(actual >= expected)


class Rule(BaseModel):
    """On its `on` triggers (signal types, `sweep:SCHEDULE`, `timer:TIMER`), when every check
    holds, ask for `action` (unless cooling down), or start `playbook` (core/playbooks.py),
    whose first step's action is then the rule's: cooldowns and budgets count it as one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: RuleId
    on: tuple[Trigger, ...] = Field(min_length=1)
    when: tuple[Check, ...] = ()
    action: Action
    # 1..10; higher goes first within one evaluation, and decides the lane (lane_of).
    priority: int = Field(ge=1, le=10)
    cooldown_seconds: int = Field(ge=0, le=7 * 24 * 3600)
    description: str = Field(default="", max_length=200)
    playbook: Name | None = None

    @property
    def lane(self) -> Priority:
        """The command lane this rule's commands go to."""
        return lane_of(self.priority)


class Limits(BaseModel):
    """Backpressure: a daily budget per workspace and a platform-wide cap per interval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_daily_budget: int = Field(default=24, ge=1)
    platform_cap_per_interval: int = Field(default=50, ge=1)
    interval_seconds: int = Field(default=60, ge=1, le=3600)
    # An action over the platform cap waits for the first of these next intervals with room
    # (decision.deferred); when none has room it is suppressed.
    defer_max_intervals: int = Field(default=10, ge=0, le=60)
    # Lanes that never wait for budget or cap (they still count towards both).
    exempt_lanes: tuple[Priority, ...] = (Priority.CRITICAL,)


class Parking(BaseModel):
    """The `[parking]` table: a dead letter of one of these actions (or, with `playbooks`, a
    playbook's failed run) parks its workspace, whose later commands then wait
    (`action.parked`) until an operator releases or drops them, or the parking is older than
    `ttl_seconds` (0: never) when the workspace's next command comes. The executors read it,
    and the stage asks them to park for a failed run; decisions do not read it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: tuple[Action, ...] = tuple(Action)
    ttl_seconds: int = Field(default=86_400, ge=0)
    # A playbook's failed run parks its workspace too (its steps' own dead letters do not:
    # the playbook's branches handle them).
    playbooks: bool = True


class PolicySpec(BaseModel):
    """A whole policy file: limits and rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limits: Limits = Limits()
    parking: Parking = Parking()
    rules: tuple[Rule, ...] = Field(min_length=1)
    schedules: tuple[Schedule, ...] = ()
    timers: tuple[Timer, ...] = ()
    timing: Timing = Timing()
    playbooks: tuple[Playbook, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _playbook_actions(cls, data: Any) -> Any:
        """A rule that starts a playbook asks for its first step's action."""
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            return data
        firsts = {}
        for playbook in data.get("playbooks") or ():
            steps = playbook.get("steps") if isinstance(playbook, dict) else None
            if isinstance(steps, list) and steps and isinstance(steps[0], dict):
                firsts[playbook.get("id")] = steps[0].get("action")
        rules = []
        for rule in data["rules"]:
            if isinstance(rule, dict) and rule.get("playbook") is not None:
                name = rule["playbook"]
                if name not in firsts:
                    raise ValueError(
                        f"rule {rule.get('id')} starts playbook {name}, which no [[playbooks]] "
                        "entry defines"
                    )
                if rule.get("action", firsts[name]) != firsts[name]:
                    raise ValueError(
                        f"rule {rule.get('id')} starts playbook {name}: its action is the "
                        f"playbook's first step's ({firsts[name]}); leave `action` out"
                    )
                rule = {**rule, "action": firsts[name]}
            rules.append(rule)
        return {**data, "rules": rules}

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicySpec:
        ids = [rule.id for rule in self.rules]
        repeated = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if repeated:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(repeated)}")
        named_kinds = (
            ("schedule", self.schedules),
            ("timer", self.timers),
            ("playbook", self.playbooks),
        )
        for kind, named in named_kinds:
            names = [item.id for item in named]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} ids must be unique")
        known = {SWEEP_PREFIX + s.id for s in self.schedules} | {
            TIMER_PREFIX + t.id for t in self.timers
        }
        for rule in self.rules:
            unknown = [
                trigger
                for trigger in rule.on
                if trigger.startswith((SWEEP_PREFIX, TIMER_PREFIX)) and trigger not in known
            ]
            if unknown:
                raise ValueError(
                    f"rule {rule.id} runs on {', '.join(unknown)}, which no [[schedules]] or "
                    "[[timers]] entry defines"
                )
        return self


class Policy:
    """A validated policy, its version, and its rules indexed by the signal types they watch."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self.limits = spec.limits
        canonical = spec.model_dump_json(
            exclude={
                # A rule's `playbook` only when it names one: rules written before playbooks
                # keep their version.
                "rules": {
                    index: {"description"} | ({"playbook"} if rule.playbook is None else set())
                    for index, rule in enumerate(spec.rules)
                },
                "playbooks": {
                    "__all__": {"description": True, "steps": {"__all__": {"description"}}}
                },
                "schedules": {"__all__": {"description"}},
                "timers": {"__all__": {"description"}},
                # Left out while as by default, so a policy written before they existed keeps
                # its version (and its recorded decisions replay as identical).
                **{
                    name: True
                    for name in _LATER_FIELDS
                    if getattr(spec, name) == PolicySpec.model_fields[name].default
                },
            }
        )
        self.version = "p-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]
        # Highest priority first; equal priorities keep file order (sorted is stable).
        ordered = sorted(spec.rules, key=lambda rule: -rule.priority)
        # By trigger: every signal type (a SignalType is its own text as a key), sweep and timer.
        triggers = [t.value for t in SignalType]
        triggers += [SWEEP_PREFIX + s.id for s in spec.schedules]
        triggers += [TIMER_PREFIX + t.id for t in spec.timers]
        self.rules_for: dict[str, tuple[Rule, ...]] = {
            trigger: tuple(rule for rule in ordered if trigger in rule.on) for trigger in triggers
        }
        # (action, cooldown) per rule, by trigger: the per-signal cooldown check reads plain
        # strings and ints (enum attribute access was a tenth of the decide time).
        self.cooldowns_for: dict[str, tuple[tuple[str, int], ...]] = {
            trigger: tuple((rule.action.value, rule.cooldown_seconds) for rule in rules)
            for trigger, rules in self.rules_for.items()
        }
        self.schedules = spec.schedules
        self.timing = spec.timing
        # Signal type → the timers its signals arm (most types arm none).
        self.timers_for: dict[str, tuple[Timer, ...]] = {
            t.value: tuple(timer for timer in spec.timers if t in timer.armed_by)
            for t in SignalType
        }
        self.held_types = frozenset(t.value for t in spec.timing.hold_until_due)
        # The types a signal of which may be held or arm a timer (most are neither).
        self.timed_types = self.held_types | {t for t, timers in self.timers_for.items() if timers}
        # What the ticker writes ticks for: the sweeps, and timer ticks when anything waits.
        self.playbooks = {playbook.id: playbook for playbook in spec.playbooks}
        # Rule id → the playbook it starts (most rules start none).
        self.playbook_of: dict[str, Playbook] = {
            rule.id: self.playbooks[rule.playbook] for rule in spec.rules if rule.playbook
        }
        # The signal types a playbook's wait may end on.
        self.awaited_types = frozenset(
            t.value for playbook in spec.playbooks for step in playbook.steps for t in step.until
        )
        self.tick_schedules: tuple[Schedule, ...] = spec.schedules
        if spec.timers or spec.timing.hold_until_due or spec.playbooks:
            self.tick_schedules += (timer_schedule(spec.timing),)

    @cached_property
    def max_cooldown_seconds(self) -> int:
        """The longest cooldown of any rule: how long an issued action must be remembered."""
        return max(rule.cooldown_seconds for rule in self.spec.rules)

    @cached_property
    def quota_memory_seconds(self) -> int:
        """How far behind the shard's newest decision the cap's slots are remembered: an hour,
        or twice the intervals a decision may be deferred over, whichever is longer."""
        limits = self.limits
        return max(3600, 2 * limits.interval_seconds * (limits.defer_max_intervals + 1))

    def __repr__(self) -> str:
        return f"Policy({self.version}, {len(self.spec.rules)} rules)"


def parse_policy(text: str, origin: str) -> Policy:
    """A policy from TOML text; PolicyError names the origin and the first problems."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy {origin} is not valid TOML: {exc}") from exc
    try:
        return Policy(PolicySpec.model_validate(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'policy'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise PolicyError(f"policy {origin} is invalid: {problems}") from exc


def load_policy(path: Path | None = None) -> Policy:
    """The policy in a TOML file, or the seed policy shipped with Autopilot."""
    path = path or SEED_POLICY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            f"cannot read policy file {path} ({exc.strerror}); "
            "point AUTOPILOT_POLICY_FILE or --policy at a readable TOML file"
        ) from exc
    return parse_policy(text, str(path))


@cache
def seed_policy() -> Policy:
    """The seed policy shipped with Autopilot, read on first use."""
    return load_policy()
