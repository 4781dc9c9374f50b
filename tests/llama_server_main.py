"""Runs llama-cpp-python's server (same arguments) with llama.cpp's extra buffer types turned off.

Extra buffer types are where llama.cpp repacks weights for special CPU kernels, AMX among them. In
llama-cpp-python 0.3.36, a build for the machine's own instruction set crashes (SIGSEGV in
`ggml_backend_amx_mul_mat`) on the embedded Q4_1 model at the first prompt of more than one token on
CPUs with AMX. The README builds it for AVX2, but pip reuses a wheel it built before whatever the
CMAKE_ARGS, so the tests' server does not depend on how the wheel was built. The server's command line
has no switch for this; the model parameter `use_extra_bufts` is set in the defaults it starts from.
"""

import llama_cpp.llama_cpp as llama_lib
from llama_cpp.server.__main__ import main

_defaults = llama_lib.llama_model_default_params


def _defaults_without_extra_buffer_types() -> llama_lib.llama_model_params:
    params = _defaults()
    params.use_extra_bufts = False
    return params


llama_lib.llama_model_default_params = _defaults_without_extra_buffer_types

if __name__ == "__main__":
    main()
