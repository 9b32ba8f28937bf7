# Passed to llama-cpp-python's build as CMAKE_PROJECT_llama.cpp_INCLUDE: the Python
# package never loads llama.cpp's `common` library, and skipping it halves the build.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "" FORCE)
