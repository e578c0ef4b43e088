# The ctest fixture of plugin_package_test (cmake -P): what a user does with a release of
# taskfarm, in WORK_DIR (the build tree, never the source tree; plugin_package.cleanup removes it).
#   1. `cmake --install BUILD_DIR --prefix WORK_DIR/prefix` (the default components)
#   2. the installed example, share/taskfarm/examples/plugins/blackscholes, configured with
#      -DCMAKE_PREFIX_PATH=WORK_DIR/prefix and built: CPU-only in WORK_DIR/build-cpu, and with
#      CUDA in WORK_DIR/build-cuda when CUDA_COMPILER is given (nvcc found at configure time)
#   3. WORK_DIR/setup.done, which the tests look for
# Arguments (-D): BUILD_DIR, WORK_DIR, CUDA_COMPILER (may be empty), GENERATOR, WERROR (ON/OFF).
cmake_minimum_required(VERSION 3.24)

foreach(arg BUILD_DIR WORK_DIR GENERATOR)
  if(NOT ${arg})
    message(FATAL_ERROR "plugin_package setup: -D${arg}=... is missing")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

# Runs a command, its output in WORK_DIR/NAME.log; a failure ends the setup with the log's tail.
function(step name)
  string(TIMESTAMP t0 "%s")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_FILE ${WORK_DIR}/${name}.log
                  ERROR_FILE ${WORK_DIR}/${name}.log)
  string(TIMESTAMP t1 "%s")
  math(EXPR seconds "${t1} - ${t0}")
  if(NOT rc EQUAL 0)
    file(STRINGS ${WORK_DIR}/${name}.log lines)
    list(LENGTH lines n)
    math(EXPR first "${n} - 25")
    if(first LESS 0)
      set(first 0)
    endif()
    list(SUBLIST lines ${first} 25 tail)
    list(JOIN tail "\n" tail)
    message(FATAL_ERROR "plugin_package setup: ${name} failed (${rc}):\n${tail}")
  endif()
  message(STATUS "${name}: ${seconds} s")
endfunction()

step(install ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

set(example ${prefix}/share/taskfarm/examples/plugins/blackscholes)
if(NOT EXISTS ${example}/CMakeLists.txt)
  message(FATAL_ERROR "plugin_package setup: the install has no ${example}/CMakeLists.txt")
endif()
set(cxx_flags "-Wall -Wextra -Wpedantic")
set(cuda_flags "-Xcompiler=-Wall,-Wextra --Werror=all-warnings")
if(WERROR)
  string(APPEND cxx_flags " -Werror")
endif()

# Finds taskfarm only in the prefix: not a system-wide install, not a user's package registry.
set(common -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
    "-DCMAKE_CXX_FLAGS=${cxx_flags}")
step(configure-cpu ${CMAKE_COMMAND} -S ${example} -B ${WORK_DIR}/build-cpu ${common}
     -DTASKFARM_PLUGIN_CUDA=OFF)
step(build-cpu ${CMAKE_COMMAND} --build ${WORK_DIR}/build-cpu)
set(variants cpu)
if(CUDA_COMPILER)
  step(configure-cuda ${CMAKE_COMMAND} -S ${example} -B ${WORK_DIR}/build-cuda ${common}
       "-DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}" "-DCMAKE_CUDA_FLAGS=${cuda_flags}")
  step(build-cuda ${CMAKE_COMMAND} --build ${WORK_DIR}/build-cuda)
  list(APPEND variants cuda)
endif()

# Both found the package in the prefix.
foreach(v IN LISTS variants)
  file(STRINGS ${WORK_DIR}/build-${v}/CMakeCache.txt dir REGEX "^taskfarm_DIR:")
  if(NOT dir STREQUAL "taskfarm_DIR:PATH=${prefix}/lib/cmake/taskfarm")
    message(FATAL_ERROR "plugin_package setup: build-${v} found taskfarm elsewhere: ${dir}")
  endif()
endforeach()
file(WRITE ${WORK_DIR}/setup.done "${variants}\n")
