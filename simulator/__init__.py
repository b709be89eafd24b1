"""The PySide6 simulator of the TV home screen, driving the real ``device`` engine."""
