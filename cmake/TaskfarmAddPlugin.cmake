# taskfarm_add_plugin(NAME SOURCES src... [CUDA] [CUDA_RUNTIME Static|Shared])
#
# Builds the kernel plugin libNAME.so that `taskfarm-worker --plugin` loads: a MODULE library
# that exports only the entry symbol (taskfarm_plugin_v1, see taskfarm/plugin.h), compiled as
# C++17 or newer (C sources as they are) with the plugin interface on its include path.
#
# CUDA: build the .cu sources too, where a CUDA compiler is found (and the cache option
# TASKFARM_PLUGIN_CUDA is on, the default). The first call enables the CUDA language when the
# project has not, with CMAKE_CUDA_ARCHITECTURES defaulting to taskfarm's own "90-real;90-virtual"
# (sm_90 code for H100/H200 plus compute_90 PTX that newer GPUs compile at load time) unless it
# or the CUDAARCHS environment variable is set. Where there is no CUDA compiler the .cu sources
# are left out, with a message: the same project builds a CPU-only plugin. The sources see
# TASKFARM_PLUGIN_CUDA defined to 1 or 0 accordingly (to put run_cuda in the kernel table).
#
# CUDA_RUNTIME: Static (the default) links the CUDA runtime into the plugin, so it loads on
# nodes without the CUDA toolkit (a CPU worker runs its run_cpu) and needs only the driver on
# GPU nodes; Shared needs libcudart.so of the same CUDA version on every node that loads it.
# Either way the plugin's runtime and the worker's use the device's primary context, so the
# stream, the pool memory and the payload the worker hands over are valid in the plugin.
#
# Call it at directory scope (not from inside a function) when CUDA is to be enabled by it.

include_guard(GLOBAL)
if(CMAKE_VERSION VERSION_LESS 3.18)
  message(FATAL_ERROR "taskfarm_add_plugin needs CMake 3.18 or newer (this is ${CMAKE_VERSION})")
endif()
# The commands below keep these policies wherever they are called from.
cmake_policy(VERSION 3.18...3.25)

if(NOT DEFINED TASKFARM_PLUGIN_CUDA)
  set(TASKFARM_PLUGIN_CUDA ON CACHE BOOL
      "taskfarm_add_plugin(... CUDA): build the CUDA sources where a CUDA compiler is found")
endif()

# Enables CUDA for the caller's directory when the arguments ask for it and nvcc is found. A
# macro: enable_language() must run at directory scope.
macro(_taskfarm_plugin_enable_cuda)
  set(_taskfarm_args ${ARGN})
  if("CUDA" IN_LIST _taskfarm_args AND TASKFARM_PLUGIN_CUDA AND NOT CMAKE_CUDA_COMPILER_LOADED)
    if(CMAKE_CURRENT_FUNCTION)
      message(WARNING "taskfarm_add_plugin: cannot enable CUDA from inside function "
                      "${CMAKE_CURRENT_FUNCTION}(); call enable_language(CUDA) in your "
                      "CMakeLists.txt first. Building without the CUDA sources.")
    else()
      include(CheckLanguage)
      check_language(CUDA)
      if(CMAKE_CUDA_COMPILER)
        if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
          set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual" CACHE STRING
              "CUDA architectures (taskfarm's default: sm_90 code and compute_90 PTX)")
        endif()
        enable_language(CUDA)
      endif()
    endif()
  endif()
  if("CUDA" IN_LIST _taskfarm_args AND TASKFARM_PLUGIN_CUDA AND CMAKE_CUDA_COMPILER_LOADED
     AND NOT TARGET CUDA::cudart_static)
    find_package(CUDAToolkit)
  endif()
  unset(_taskfarm_args)
endmacro()

function(_taskfarm_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 TFP "CUDA" "CUDA_RUNTIME" "SOURCES")
  set(usage "taskfarm_add_plugin(NAME SOURCES src... [CUDA] [CUDA_RUNTIME Static|Shared])")
  if(TFP_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "taskfarm_add_plugin(${name}): unexpected '${TFP_UNPARSED_ARGUMENTS}'; "
                        "usage: ${usage}")
  endif()
  if(NOT TFP_SOURCES)
    message(FATAL_ERROR "taskfarm_add_plugin(${name}): no SOURCES; usage: ${usage}")
  endif()
  if(NOT TFP_CUDA_RUNTIME)
    set(TFP_CUDA_RUNTIME Static)
  endif()
  if(NOT TFP_CUDA_RUNTIME MATCHES "^(Static|Shared)$")
    message(FATAL_ERROR "taskfarm_add_plugin(${name}): CUDA_RUNTIME is Static or Shared, not "
                        "'${TFP_CUDA_RUNTIME}'")
  endif()
  set(sources ${TFP_SOURCES})
  set(cuda_sources ${sources})
  list(FILTER cuda_sources INCLUDE REGEX "\\.cu$")
  if(cuda_sources AND NOT TFP_CUDA)
    message(FATAL_ERROR "taskfarm_add_plugin(${name}): CUDA sources (${cuda_sources}) need the "
                        "CUDA option")
  endif()

  set(with_cuda 0)
  if(TFP_CUDA)
    if(NOT TASKFARM_PLUGIN_CUDA)
      set(why "TASKFARM_PLUGIN_CUDA is off")
    elseif(NOT CMAKE_CUDA_COMPILER_LOADED)
      set(why "CUDA is not enabled: no CUDA compiler found (set CMAKE_CUDA_COMPILER or put "
              "nvcc on PATH), or called from a function")
      string(CONCAT why ${why})
    elseif(NOT TARGET CUDA::cudart_static)
      set(why "the CUDA toolkit's libraries were not found (find_package(CUDAToolkit))")
    else()
      set(with_cuda 1)
    endif()
    if(NOT with_cuda)
      list(FILTER sources EXCLUDE REGEX "\\.cu$")
      message(STATUS "taskfarm: plugin ${name} is built without its CUDA sources (${why})")
      if(NOT sources)
        message(FATAL_ERROR "taskfarm_add_plugin(${name}): no sources left without CUDA")
      endif()
    endif()
  endif()

  add_library(${name} MODULE ${sources})
  target_link_libraries(${name} PRIVATE taskfarm::plugin)
  target_compile_definitions(${name} PRIVATE TASKFARM_PLUGIN_CUDA=${with_cuda})
  # libNAME.so, whatever the platform's module prefix, as the worker's --plugin-dir expects.
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    SUFFIX ".so"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if("CXX" IN_LIST languages)
    target_compile_features(${name} PRIVATE cxx_std_17)
  endif()
  if(with_cuda)
    target_compile_features(${name} PRIVATE cuda_std_17)
    set_target_properties(${name} PROPERTIES CUDA_RUNTIME_LIBRARY ${TFP_CUDA_RUNTIME})
    if(TFP_CUDA_RUNTIME STREQUAL "Static")
      target_link_libraries(${name} PRIVATE CUDA::cudart_static)
    else()
      target_link_libraries(${name} PRIVATE CUDA::cudart)
    endif()
  endif()

  # Only the entry symbol leaves the library: not the static CUDA runtime's, not libstdc++'s
  # inline functions, so two plugins (and the worker's own GPU plugin) never interpose on each
  # other. -z defs: a missing symbol is a link error here, not a dlopen error on a node.
  set(map ${CMAKE_CURRENT_BINARY_DIR}/${name}.taskfarm.map)
  file(CONFIGURE OUTPUT ${map}
       CONTENT "{\n  global: taskfarm_plugin_v1;\n  local: *;\n};\n" @ONLY)
  target_link_options(${name} PRIVATE "LINKER:--version-script=${map}" "LINKER:-z,defs")
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS ${map})
endfunction()

# The public command: enables CUDA at the caller's scope first when asked, then builds.
macro(taskfarm_add_plugin)
  _taskfarm_plugin_enable_cuda(${ARGN})
  _taskfarm_add_plugin(${ARGN})
endmacro()
