# The layering rule of pare's source folders, checked at configure time (CMakeLists.txt) and by the
# ctest `layering_check_catches_upward_include` on a tree that breaks it.
#
# Folders, lowest first; a folder may include its own headers and those of folders listed before
# it, never one after it (nor a sibling on the same level: pipeline and train are siblings).
#   src/base src/io src/ir src/data src/families src/tasks {src/pipeline, src/train}
#   quantize masks passes cli
# Inside src/ every include of a pare header names its folder ("families/model.h"), so the rule is
# a rule on include lines. The top-level folders include src/ headers that way and their own by
# bare name.
#
# Use: include() it and call pare_check_layers(ROOT), or
#   cmake -DROOT=DIR -P cmake/check_layers.cmake   (exit code 1 and one line per violation)

cmake_policy(SET CMP0057 NEW)
set(PARE_LAYERS "base" "io" "ir" "data" "families" "tasks" "pipeline|train")
set(PARE_TOP_LAYERS "quantize" "masks" "passes" "cli")

function(pare_layer_level folder out)
  set(i 0)
  foreach(l IN LISTS PARE_LAYERS)
    string(REPLACE "|" ";" names "${l}")
    if("${folder}" IN_LIST names)
      set(${out} ${i} PARENT_SCOPE)
      return()
    endif()
    math(EXPR i "${i} + 1")
  endforeach()
  set(${out} -1 PARENT_SCOPE)
endfunction()

function(pare_check_layers root)
  set(violations)
  list(LENGTH PARE_LAYERS top_level)
  # src/ folders and the top-level folders above them.
  set(folders)
  foreach(l IN LISTS PARE_LAYERS)
    string(REPLACE "|" ";" names "${l}")
    foreach(n IN LISTS names)
      list(APPEND folders "src/${n}")
    endforeach()
  endforeach()
  list(APPEND folders ${PARE_TOP_LAYERS})
  foreach(dir IN LISTS folders)
    if(NOT IS_DIRECTORY "${root}/${dir}")
      continue()
    endif()
    if(dir MATCHES "^src/(.*)$")
      set(me "${CMAKE_MATCH_1}")
      pare_layer_level("${me}" my_level)
    else()
      set(me "")
      list(FIND PARE_TOP_LAYERS "${dir}" t)
      math(EXPR my_level "${top_level} + ${t}")
    endif()
    file(GLOB files "${root}/${dir}/*.h" "${root}/${dir}/*.cpp" "${root}/${dir}/*.inc")
    foreach(f IN LISTS files)
      file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
      foreach(line IN LISTS lines)
        if(NOT line MATCHES "\"([^\"]+)\"")
          continue()
        endif()
        set(inc "${CMAKE_MATCH_1}")
        if(inc MATCHES "^([a-z_]+)/")
          set(other "${CMAKE_MATCH_1}")
          pare_layer_level("${other}" other_level)
          if(other_level LESS 0)
            continue()  # not a pare folder (e.g. a system path)
          endif()
          if(other_level GREATER my_level OR (other_level EQUAL my_level AND NOT other STREQUAL me))
            file(RELATIVE_PATH rel "${root}" "${f}")
            list(APPEND violations "${rel}: includes \"${inc}\": ${other} is not below ${dir}")
          endif()
        elseif(me AND NOT EXISTS "${root}/${dir}/${inc}")
          file(RELATIVE_PATH rel "${root}" "${f}")
          list(APPEND violations "${rel}: includes \"${inc}\" without its folder (write \"FOLDER/${inc}\")")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(violations)
    list(JOIN violations "\n  " text)
    message(FATAL_ERROR "pare layering: a lower folder includes a higher one (cmake/check_layers.cmake):\n  ${text}")
  endif()
endfunction()

if(CMAKE_SCRIPT_MODE_FILE AND DEFINED ROOT)
  pare_check_layers("${ROOT}")
endif()
