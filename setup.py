"""Build step that pyproject.toml cannot express: ship the top-level styles.yaml inside the package.

The catalog is kept once, at the top of the repository (the design's layout); the wheel carries it as
``stylegrpo/styles.yaml``, where ``stylegrpo.styles.default_styles_path`` finds it outside a checkout.
An editable install needs no copy: there the catalog is found at the repository root.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CATALOG = "styles.yaml"  # the same name as stylegrpo.styles.STYLES_FILENAME


class BuildPyWithCatalog(build_py):
    """build_py plus the top-level catalog copied to <build>/stylegrpo/styles.yaml."""

    def _catalog_target(self) -> str:
        return str(Path(self.build_lib) / "stylegrpo" / CATALOG)

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            self.mkpath(str(Path(self.build_lib) / "stylegrpo"))
            self.copy_file(CATALOG, self._catalog_target(), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, self._catalog_target()]

    def get_output_mapping(self) -> dict[str, str]:
        mapping = super().get_output_mapping()
        if not self.editable_mode:
            mapping[self._catalog_target()] = CATALOG
        return mapping


setup(cmdclass={"build_py": BuildPyWithCatalog})
