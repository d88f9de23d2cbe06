"""Exceptions the agent raises; each carries a message an operator can act on."""


class TaskscopeError(Exception):
    """Base class of every taskscope error."""


class ConfigError(TaskscopeError):
    """The configuration file or a command-line flag is malformed."""


class PrivilegeError(TaskscopeError):
    """The agent lacks a capability it needs to load probes."""


class DependencyError(TaskscopeError):
    """BCC, kernel headers or tracefs are missing."""


class ProbeLoadError(TaskscopeError):
    """No probe could be compiled or attached."""
