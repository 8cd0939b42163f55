# Build helpers shared by every part of ORFEAS.
#
# Why variants: `make test` runs the unit tests a second time under
# AddressSanitizer+UBSan and the concurrency tests under ThreadSanitizer.
# A sanitizer must see every object of the program, so each ORFEAS library is
# compiled three times (plain, _asan, _tsan) inside the one build tree, and
# ctest drives all of them in one run with one summary line.

set(ORFEAS_WARNINGS -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wvla)
set(ORFEAS_ASAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
set(ORFEAS_TSAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)

# Common settings for any ORFEAS C target.
function(orfeas_target_defaults tgt)
  get_target_property(_lang_type ${tgt} TYPE)
  target_compile_options(${tgt} PRIVATE
    $<$<COMPILE_LANGUAGE:C>:${ORFEAS_WARNINGS}>
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>)
  # _GNU_SOURCE: POSIX 2008 and Linux calls (pthread, clock_gettime, uselocale).
  target_compile_definitions(${tgt} PRIVATE _GNU_SOURCE)
endfunction()

# Maps a dependency to its sanitizer twin when there is one (our own libs).
function(_orfeas_variant_libs out suffix)
  set(result)
  foreach(l IN LISTS ARGN)
    if(suffix AND TARGET ${l}${suffix})
      list(APPEND result ${l}${suffix})
    else()
      list(APPEND result ${l})
    endif()
  endforeach()
  set(${out} ${result} PARENT_SCOPE)
endfunction()

function(_orfeas_apply_sanitizer tgt suffix)
  if(suffix)
    string(SUBSTRING ${suffix} 1 -1 kind)
    target_compile_definitions(${tgt} PRIVATE ORFEAS_SANITIZER="${kind}")
  endif()
  if(suffix STREQUAL "_asan")
    target_compile_options(${tgt} PRIVATE ${ORFEAS_ASAN_FLAGS} -O1 -g)
    target_link_options(${tgt} PUBLIC -fsanitize=address,undefined)
  elseif(suffix STREQUAL "_tsan")
    target_compile_options(${tgt} PRIVATE ${ORFEAS_TSAN_FLAGS} -O1 -g)
    target_link_options(${tgt} PUBLIC -fsanitize=thread)
  endif()
endfunction()

# orfeas_library(NAME SOURCES a.c ... [PUBLIC_LIBS ...] [PRIVATE_LIBS ...])
# Static library NAME plus NAME_asan and NAME_tsan, all with include/ public.
function(orfeas_library name)
  cmake_parse_arguments(A "" "" "SOURCES;PUBLIC_LIBS;PRIVATE_LIBS" ${ARGN})
  foreach(suffix "" "_asan" "_tsan")
    set(t ${name}${suffix})
    add_library(${t} STATIC ${A_SOURCES})
    if(suffix)
      set_target_properties(${t} PROPERTIES EXCLUDE_FROM_ALL OFF)
    endif()
    target_include_directories(${t} PUBLIC ${CMAKE_SOURCE_DIR}/include
                                      PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    orfeas_target_defaults(${t})
    _orfeas_apply_sanitizer(${t} "${suffix}")
    _orfeas_variant_libs(pub "${suffix}" ${A_PUBLIC_LIBS})
    _orfeas_variant_libs(priv "${suffix}" ${A_PRIVATE_LIBS})
    target_link_libraries(${t} PUBLIC ${pub} PRIVATE ${priv})
  endforeach()
endfunction()

# orfeas_unit_test(NAME SOURCES t.c ... LIBS ... [TSAN] [NO_ASAN] [TIMEOUT s]
#                  [ARGS ...])
# Registers ctest tests unit.NAME and asan.NAME (unless NO_ASAN), and
# tsan.NAME with TSAN (the concurrency tests).
function(orfeas_unit_test name)
  cmake_parse_arguments(A "TSAN;NO_ASAN" "TIMEOUT" "SOURCES;LIBS;ARGS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 120)
  endif()
  set(variants "")
  if(NOT A_NO_ASAN)
    list(APPEND variants "_asan")
  endif()
  if(A_TSAN)
    list(APPEND variants "_tsan")
  endif()
  foreach(suffix "" ${variants})
    set(t test_${name}${suffix})
    add_executable(${t} ${A_SOURCES})
    set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                          ${CMAKE_BINARY_DIR}/tests)
    orfeas_target_defaults(${t})
    _orfeas_apply_sanitizer(${t} "${suffix}")
    _orfeas_variant_libs(libs "${suffix}" ${A_LIBS})
    target_link_libraries(${t} PRIVATE ${libs} PkgConfig::CMOCKA Threads::Threads)
    if(suffix STREQUAL "")
      set(tname unit.${name})
    else()
      string(SUBSTRING ${suffix} 1 -1 kind)
      set(tname ${kind}.${name})
    endif()
    add_test(NAME ${tname} COMMAND ${t} ${A_ARGS}
             WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(${tname} PROPERTIES TIMEOUT ${A_TIMEOUT}
      ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")
  endforeach()
endfunction()

# ctest labels from each test's name and cost, for `ctest -L` / `-LE`: its
# family (the name's prefix: unit, asan, tsan, service, reliability,
# monitoring, browser, compat, fuzz, pipeline, tools, docs, promtool,
# prometheus), "sanitizer" for a run under ASan or TSan, "long" for a COST
# of 10 s or more (docs/testing.md). Every tests/*/CMakeLists.txt that adds
# tests starts with cmake_language(DEFER CALL orfeas_label_tests), so the
# labels cover the tests added anywhere in that file.
function(orfeas_label_tests)
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(t IN LISTS tests)
    string(REGEX MATCH "^[^.]+" labels "${t}")
    if(t MATCHES "(^|[._])(asan|tsan)[._]")
      list(APPEND labels sanitizer)
    endif()
    get_test_property(${t} COST cost)
    if(cost AND cost GREATER_EQUAL 10)
      list(APPEND labels long)
    endif()
    set_tests_properties(${t} PROPERTIES LABELS "${labels}")
  endforeach()
endfunction()
