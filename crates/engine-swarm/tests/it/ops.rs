//! Operations on tasks of any node: logs, exec, cp, top.
