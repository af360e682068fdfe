"""The /migrate grammar: text -> typed commands (parser), the option table, value parsers, help and hints.

Owns: lexing phone punctuation, option parsing and combination rules, the command types and their JSON and text
forms, help text. Pure. May import: migration_core.errors, migration_core.models. Nothing else of the core.
"""
