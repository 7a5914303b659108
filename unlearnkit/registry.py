"""Name -> object registries: one decorator to register, one place to look things up."""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """An unknown registry name; the message lists the names that exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> object, plus optional metadata. Raises on duplicates and on unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            self._meta[name] = meta
            return obj

        return decorator

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def meta(self, name: str) -> dict[str, Any]:
        self[name]
        return dict(self._meta[name])

    def name_of(self, obj: Any) -> str | None:
        """The name `obj` (or its class) is registered under, or None."""
        cls = obj if isinstance(obj, type) else type(obj)
        return next((n for n, o in self._items.items() if o is obj or o is cls), None)


DATASETS: Registry[Any] = Registry("dataset")
FORMATS: Registry[Any] = Registry("data format")  # FORMAT:PATH loaders for a user's own files
MODELS: Registry[Any] = Registry("model")
TASKS: Registry[Any] = Registry("task")
EVALUATIONS: Registry[Any] = Registry("evaluation")  # task name -> evaluate(model, request, test, **options)
