"""Only here because cffi's build hook is a setup() keyword; all metadata is in pyproject.toml.

It also ships the CAN contract: its single source is csrc/can/bmsfil.dbc,
beside the C codec generated from it, and the build copies it into the
package as bmsfil/data/bmsfil.dbc. Editable installs copy nothing: they read
csrc/can/ directly (bmsfil.can_contract.dbc_path).
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CAN_CONTRACT = Path("csrc") / "can" / "bmsfil.dbc"


class build_py_with_can_contract(build_py):
    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "bmsfil" / "data" / CAN_CONTRACT.name
            self.mkpath(str(target.parent))
            self.copy_file(str(CAN_CONTRACT), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / "bmsfil" / "data" / CAN_CONTRACT.name))
        return outputs


setup(
    cffi_modules=["host/bmsfil/_build_core.py:ffibuilder"],
    cmdclass={"build_py": build_py_with_can_contract},
)
