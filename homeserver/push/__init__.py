"""Push rules: the server-default rules, a user's ruleset, and the pure evaluator.

Spec: client-server-api "Push Notifications" (push rules, conditions, predefined rules).
Nothing in this package does I/O; storage and the per-event bulk evaluation live in
``storage.push_rules``, ``storage.push_actions`` and ``homeserver.handlers``.
"""
