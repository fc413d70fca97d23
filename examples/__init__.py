"""Examples of bringing your own loss, model and data to losscli (see README.md here).

A regular package, so ``examples.custom_loss:SoftCappedCE`` imports from the repository root
(the ``losscli`` command also searches the current directory for plugin modules).
"""
