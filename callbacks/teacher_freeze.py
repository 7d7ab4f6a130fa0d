"""``TeacherFreeze`` under its callback path, for YAMLs that list it in ``trainer.callbacks``.

It lives with the methods (``trackers.methods.teacher_freeze``) because distillation methods return
it from ``configure_callbacks`` and ``trackers`` never imports ``callbacks``; Lightning replaces a
listed copy with the module's own.
"""

from trackers.methods.teacher_freeze import TeacherFreeze

__all__ = ["TeacherFreeze"]
