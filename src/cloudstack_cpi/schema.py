"""A small declarative schema for the CPI's config file: frozen, typed sections read from JSON in one pass.

Why not a pydantic model, as the cloud_properties are: BOSH starts one process per call, and the config is read by
every call but ``info``.  Importing pydantic's model machinery and building the config's validator cost about
70 ms of every ``has_vm``, more than the whole call's own work (issue 17: a call may cost at most 1.3x the bare
imports of requests and pydantic).  The config's types are few (text, numbers, flags, choices, lists of text,
nested sections), so they are checked here, with pydantic's wording, so that an operator reads the same kind of
message for a config mistake as for a cloud_properties one.

One choke point stays: ``parse`` is the only way a section is made, and every problem it finds names the
property's path and never its value (values may be secrets).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

REQUIRED: Any = object()
_ALL_DEFAULTS: Any = object()


class Problem(Exception):
    """One property's value is wrong; ``message`` never quotes the value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Secret:
    """A secret string: printed as stars, read with ``get_secret_value()`` (pydantic's SecretStr contract)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


if TYPE_CHECKING:
    # To the type checker a property's declaration stands for the value it reads, as pydantic's Field() does:
    # ``timeout: float = Number(600)`` is a float on every parsed section. At run time a Prop is a plain object.
    _Declaration = Any
else:
    _Declaration = object


class Prop(_Declaration):
    """One property of a section: its JSON key, default, documentation and how a JSON value is checked."""

    type_name = "any"

    def __init__(self, default: Any = REQUIRED, *, doc: str = "", key: str | None = None,
                 check: Callable[[Any], Any] | None = None) -> None:
        self.default = default
        self.doc = doc
        self.key = key          # the JSON key when it is not the attribute's name (``global`` is a keyword)
        self.check = check      # a further check of a valid value: returns the value to keep or raises ValueError
        self.attr = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_value(self) -> Any:
        return list(self.default) if isinstance(self.default, list) else self.default

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        return value

    def read(self, value: Any, path: str, problems: list[str]) -> Any:
        if value is None and self.default is None:  # null where null is the default
            return None
        try:
            converted = self.convert(value, path, problems)
            return self.check(converted) if self.check is not None and converted is not None else converted
        except Problem as problem:
            problems.append(f"{path}: {problem.message}")
        except ValueError as error:
            problems.append(f"{path}: Value error, {error}")
        return None


class Text(Prop):
    type_name = "string"

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        if not isinstance(value, str):
            raise Problem("Input should be a valid string")
        return value


class SecretText(Text):
    type_name = "string (secret)"

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        return Secret(super().convert(value, path, problems))


class Flag(Prop):
    type_name = "boolean"

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        if not isinstance(value, bool):  # strict: "yes", "false" or 1 would otherwise be read as something
            raise Problem("must be true or false (a JSON boolean, not a string or number)")
        return value


def _number(value: Any) -> float | int:
    """A JSON number, or text holding one (a quoted YAML value): pydantic's lax reading of numbers."""
    if isinstance(value, bool):
        raise Problem("Input should be a valid number")
    if isinstance(value, int | float):
        number: float | int = value
    elif isinstance(value, str):
        try:
            number = float(value.strip()) if any(c in value for c in ".eE") else int(value.strip())
        except ValueError:
            raise Problem("Input should be a valid number, unable to parse string as a number") from None
    else:
        raise Problem("Input should be a valid number")
    if isinstance(number, float) and not math.isfinite(number):
        raise Problem("Input should be a finite number")
    return number


class Number(Prop):
    type_name = "number"

    def __init__(self, default: Any = REQUIRED, *, gt: float | None = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)
        self.gt = gt

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        number = float(_number(value))
        if self.gt is not None and not number > self.gt:
            raise Problem(f"Input should be greater than {_plain(self.gt)}")
        return number


class Integer(Prop):
    type_name = "integer"

    def __init__(self, default: Any = REQUIRED, *, ge: int | None = None, le: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(default, **kwargs)
        self.ge, self.le = ge, le

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        number = _number(value)
        if isinstance(number, float):
            if not number.is_integer():
                raise Problem("Input should be a valid integer, got a number with a fractional part")
            number = int(number)
        if self.ge is not None and number < self.ge:
            raise Problem(f"Input should be greater than or equal to {self.ge}")
        if self.le is not None and number > self.le:
            raise Problem(f"Input should be less than or equal to {self.le}")
        return number


class Choice(Prop):
    def __init__(self, default: Any, *, options: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(default, **kwargs)
        self.options = options

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return " \\| ".join(f"`{option}`" for option in self.options)

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        if value not in self.options:
            quoted = [f"'{option}'" for option in self.options]
            raise Problem(f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}")
        return value


class TextList(Prop):
    type_name = "list of string"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__([], **kwargs)

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        if not isinstance(value, list):
            raise Problem("Input should be a valid list")
        items = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                items.append(item)
            else:
                problems.append(f"{path}.{index}: Input should be a valid string")
        return items


class Mapping(Prop):
    type_name = "map of any"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__({}, **kwargs)

    def default_value(self) -> Any:
        return {}

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        if not isinstance(value, dict):
            raise Problem("Input should be a valid dictionary")
        return dict(value)


class Anything(Prop):
    """A key accepted and ignored (the Go CPI release's properties): any JSON value."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)

    def read(self, value: Any, path: str, problems: list[str]) -> Any:
        return value


class Nested(Prop):
    """A section inside a section: ``required``, ``optional`` (default null), or else all its own defaults."""

    def __init__(self, section: type[Section], *, optional: bool = False, required: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(REQUIRED if required else None if optional else _ALL_DEFAULTS, **kwargs)
        self.section = section
        self.optional = optional

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return "object or null" if self.optional else "object"

    def default_value(self) -> Any:
        return None if self.optional else parse(self.section, {})

    def convert(self, value: Any, path: str, problems: list[str]) -> Any:
        if not isinstance(value, dict):
            raise Problem(f"Input should be a valid dictionary or instance of {self.section.__name__}")
        return _read_section(self.section, value, path, problems)


class Section:
    """A frozen group of properties; subclasses declare them as class attributes made with the Prop kinds."""

    __props__: ClassVar[dict[str, Prop]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        props: dict[str, Prop] = {}
        for attr, value in list(vars(cls).items()):
            if isinstance(value, Prop):
                value.attr = attr
                props[value.key or attr] = value
        cls.__props__ = props

    def __init__(self, **values: Any) -> None:
        for prop in self.__props__.values():
            object.__setattr__(self, prop.attr, values[prop.attr])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: '{name}' cannot be set")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{prop.attr}={getattr(self, prop.attr)!r}" for prop in self.__props__.values())
        return f"{type(self).__name__}({fields})"

    def as_dict(self) -> dict[str, Any]:
        """Attribute name -> value, nested sections as dicts (secrets stay Secret)."""
        out = {}
        for prop in self.__props__.values():
            value = getattr(self, prop.attr)
            out[prop.attr] = value.as_dict() if isinstance(value, Section) else value
        return out


def parse(section: type[Section], raw: dict[str, Any], path: str = "") -> Any:
    """``raw`` as a ``section``, or Problem listing every wrong property ("path: reason; path: reason")."""
    problems: list[str] = []
    value = _read_section(section, raw, path, problems)
    if problems:
        raise Problem("; ".join(problems))
    return value


def _read_section(section: type[Section], raw: dict[str, Any], path: str, problems: list[str]) -> Section:
    values = {}
    for key, prop in section.__props__.items():
        here = f"{path}.{key}" if path else key
        if key in raw:
            values[prop.attr] = prop.read(raw[key], here, problems)
        elif prop.required:
            problems.append(f"{here}: Field required")
        else:
            values[prop.attr] = prop.default_value()
    for key in raw:
        if key not in section.__props__:
            here = f"{path}.{key}" if path else str(key)
            problems.append(f"{here}: unknown property{_nearest(str(key), list(section.__props__))}")
    if any(prop.attr not in values for prop in section.__props__.values()):
        return section.__new__(section)  # incomplete: only its problems are reported
    return section(**values)


def _nearest(key: str, names: list[str]) -> str:
    """", did you mean 'x'?" for the closest property at the same place, else the valid ones."""
    import difflib  # only a config with a mistake pays for it

    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f", did you mean '{close[0]}'?" if close else f" (valid here: {', '.join(sorted(names))})"


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)
