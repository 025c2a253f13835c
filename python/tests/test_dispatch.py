"""The dispatch table: composed from every module's table, each handler shaped for its kind.
(That the table and the Rust protocol crate define the same requests is checked on the Rust
side: crates/pymri-protocol/tests/agent_requests.rs.)"""

import os
import unittest

import helpers  # noqa: F401 - puts the package on sys.path
from pymri_agent import _handlers, engine


def _files_with_tables():
    package = os.path.dirname(engine.__file__)
    for name in sorted(os.listdir(package)):
        if name.endswith(".py"):
            with open(os.path.join(package, name), encoding="utf-8") as f:
                if "\nREQUESTS = {\n" in f.read():
                    yield name


class DispatchTableTests(unittest.TestCase):
    def test_the_table_is_every_module_table(self):
        # A handler's module is found through the handler (its globals), not by importing: the
        # tests' attaches take the package off sys.path.
        tables = {}
        for _, handler in engine.REQUESTS.values():
            tables[os.path.basename(handler.__code__.co_filename)] = handler.__globals__["REQUESTS"]
        self.assertEqual(sorted(tables), list(_files_with_tables()))
        union = {}
        for module, table in tables.items():
            for name, entry in table.items():
                self.assertNotIn(name, union, module)
                union[name] = entry
        self.assertEqual(engine.REQUESTS, union)

    def test_each_handler_takes_the_arguments_of_its_kind(self):
        arity = {_handlers.READER: 2, _handlers.AFTER: 2, _handlers.STOPPED: 3, _handlers.RESUME: 3}
        for name, (kind, handler) in engine.REQUESTS.items():
            self.assertEqual(handler.__code__.co_argcount, arity[kind], name)

    def test_compose_refuses_a_request_defined_twice_or_of_no_known_kind(self):
        table = {"info": (_handlers.READER, len)}
        with self.assertRaisesRegex(ValueError, "'info' is defined twice"):
            _handlers.compose(table, table)
        with self.assertRaisesRegex(ValueError, "unknown kind"):
            _handlers.compose({"x": ("sometimes", len)})


if __name__ == "__main__":
    unittest.main()
